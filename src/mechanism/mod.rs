//! The rules of the Gradients white paper as pure functions: no I/O, no Kubernetes types.
//!
//! - [`allocation`]: synthetic task-type mix, time allocation, dataset split sizes;
//! - [`halving`]: the rungs of successive halving across miners (an extension, `spec.halving`);
//! - [`selection`]: weighted miner selection and the delay rule when miners are scarce;
//! - [`scoring`]: one task's statuses, ranks, scores and task weight;
//! - [`leaderboard`]: 1/3/7-day windows, quality and the final transform into weights.
//!
//! Every constant lives in [`MechanismConfig`].

pub mod allocation;
pub mod config;
pub mod halving;
pub mod leaderboard;
pub mod records;
pub mod scoring;
pub mod selection;

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use config::MechanismConfig;

/// The four kinds of fine-tuning task of the paper (§4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub enum TaskType {
    /// Instruction tuning (supervised fine-tuning on completions).
    InstructText,
    /// Direct preference optimisation.
    Dpo,
    /// Group relative policy optimisation with reward functions.
    Grpo,
    /// Diffusion (text-to-image) fine-tuning.
    Image,
}

impl TaskType {
    pub const ALL: [TaskType; 4] = [TaskType::InstructText, TaskType::Dpo, TaskType::Grpo, TaskType::Image];

    /// Text tasks are scored on test and synthetic loss; image tasks on two reconstruction losses.
    pub fn is_text(self) -> bool {
        !matches!(self, TaskType::Image)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::InstructText => "InstructText",
            TaskType::Dpo => "Dpo",
            TaskType::Grpo => "Grpo",
            TaskType::Image => "Image",
        }
    }
}

impl fmt::Display for TaskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name is not one of the four task types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown task type {0:?} (expected InstructText, Dpo, Grpo or Image)")]
pub struct UnknownTaskType(pub String);

impl FromStr for TaskType {
    type Err = UnknownTaskType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskType::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| UnknownTaskType(s.to_string()))
    }
}
