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

/// How long workloads may take and how often they are retried. camelCase like the rest of the
/// operator's config file (the chart passes `workloads.lifecycle` through as written).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
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
    /// Writing the synthetic set with a generator model (`spec.dataset.generator`) running
    /// longer than this fails the task (after retries).
    pub synthesize_timeout_s: u64,
    /// A workload requested (or admitted by its queue) this long ago that has not started is
    /// stopped and failed; one still waiting in a Kueue queue never is. `None`: wait as long as
    /// it takes (the local executor queues work behind its parallelism limit).
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
            synthesize_timeout_s: 3 * 3600,
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
    pub(crate) fn synthesize_timeout(&self) -> Duration {
        seconds(self.synthesize_timeout_s)
    }
    pub(crate) fn pending_timeout(&self) -> Option<Duration> {
        self.pending_timeout_s.map(seconds)
    }
}

fn seconds(s: u64) -> Duration {
    Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1_000_000))
}

#[cfg(test)]
mod tests {
    use crate::workloads::WorkloadConfig;

    /// The chart renders `workloads.lifecycle` into the operator's config file as written in the
    /// values, in the camelCase every other key of that file uses (`pendingTimeoutS: null`).
    #[test]
    fn the_operator_accepts_the_lifecycle_keys_the_chart_documents() {
        let rendered = "operatorImage: o\ntrainerImage: t\nevaluatorImage: e\ngpuClasses: {}\n\
                        defaultGpuClass: h100\nartifacts: pvc://a\n\
                        lifecycle:\n  pendingTimeoutS: null\n  maxAttempts: 5\n  deadlineGraceS: 60\n\
                        \x20 evaluationTimeoutS: 7\n  prepareTimeoutS: 8\n";
        let config: WorkloadConfig = serde_norway::from_str(rendered).expect("the chart's lifecycle keys parse");
        let lifecycle = config.lifecycle.expect("lifecycle section");
        assert_eq!(lifecycle.pending_timeout_s, None);
        assert_eq!(
            (
                lifecycle.max_attempts,
                lifecycle.deadline_grace_s,
                lifecycle.evaluation_timeout_s,
                lifecycle.prepare_timeout_s
            ),
            (5, 60, 7, 8)
        );
    }

    #[test]
    fn a_misspelt_lifecycle_key_is_refused_by_name() {
        let error = serde_norway::from_str::<super::LifecycleConfig>("pendingTimeout: 5").unwrap_err().to_string();
        assert!(error.contains("unknown field `pendingTimeout`") && error.contains("pendingTimeoutS"), "{error}");
    }
}
