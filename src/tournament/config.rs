//! Timeouts and retry limits of the lifecycle (the mechanism's constants live in
//! [`MechanismConfig`]).

use chrono::Duration;
use serde::{Deserialize, Serialize};

use crate::mechanism::MechanismConfig;

/// Everything [`super::decide`] needs besides the task, its state and the observation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TournamentConfig {
    pub mechanism: MechanismConfig,
    pub lifecycle: LifecycleConfig,
}

/// How long workloads may take and how often they are retried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LifecycleConfig {
    /// Attempts per workload when failures are not the miner's doing (lost, evicted, interrupted).
    pub max_attempts: u32,
    /// A training still running this long after its deadline is stopped. Trainers plan their
    /// steps from the deadline and save before it; the grace covers saving and process exit.
    pub deadline_grace_s: u64,
    /// An evaluation running longer than this is stopped and its submission failed.
    pub evaluation_timeout_s: u64,
    /// A seal (copying one model) running longer than this is stopped (and retried).
    pub seal_timeout_s: u64,
    /// Dataset preparation running longer than this fails the task (after retries).
    pub prepare_timeout_s: u64,
    /// A workload requested this long ago that has not started is stopped and failed. `None`:
    /// wait as long as it takes (the local executor queues work behind its parallelism limit).
    pub pending_timeout_s: Option<u64>,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            deadline_grace_s: 120,
            evaluation_timeout_s: 3 * 3600,
            seal_timeout_s: 3600,
            prepare_timeout_s: 3600,
            pending_timeout_s: Some(3600),
        }
    }
}

impl LifecycleConfig {
    pub(crate) fn grace(&self) -> Duration {
        seconds(self.deadline_grace_s)
    }
    pub(crate) fn evaluation_timeout(&self) -> Duration {
        seconds(self.evaluation_timeout_s)
    }
    pub(crate) fn seal_timeout(&self) -> Duration {
        seconds(self.seal_timeout_s)
    }
    pub(crate) fn prepare_timeout(&self) -> Duration {
        seconds(self.prepare_timeout_s)
    }
    pub(crate) fn pending_timeout(&self) -> Option<Duration> {
        self.pending_timeout_s.map(seconds)
    }
}

fn seconds(s: u64) -> Duration {
    Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1_000_000))
}
