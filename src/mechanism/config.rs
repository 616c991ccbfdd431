//! Every constant of the mechanism, in one place.
//!
//! Sources: "WP" is the Gradients white paper (`shared/reference/gradients-white-paper.txt`,
//! arXiv 2506.07940); "notes" is `shared/reference/gradients-codebase-notes.md`, which records
//! what the public G.O.D code really does. Where the two differ the field says which one we follow.

use serde::{Deserialize, Serialize};

use super::TaskType;

/// The tournament mechanism's parameters. `MechanismConfig::default()` is the paper's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MechanismConfig {
    /// Task-type mix for synthetic tasks, `[instruct, image, dpo, grpo]`.
    /// WP §2.1 with notes §5 "Task-type weights" (instruct 0.25, image 0.25, DPO 0.15, GRPO 0.35).
    pub synthetic_task_mix: TaskTypeMix,
    /// Text time allocation bins by dataset rows: `(rows below, min hours, max hours)`.
    /// WP §2.4; notes §2 "Hours" (`R@WP`). Rows above the last bound use the last bin.
    pub text_hour_bins: Vec<HourBin>,
    /// Image tasks get whole hours in `[min, max]`. WP §2.4 ("typically 1-2 hours").
    pub image_hours: (u32, u32),
    /// Test split: `min(test_fraction · rows, test_max_rows)`. Notes §2 "Splits" (min(10%, 1000)).
    pub test_fraction: f64,
    pub test_max_rows: usize,
    /// Held-out synthetic set: `min(synthetic_fraction · rows, synthetic_max_rows)` rows that are
    /// in neither train nor test. Notes §3: the public code's instruct "synthetic" set was 500
    /// training rows; we hold them out instead so memorising the training split earns nothing.
    pub synthetic_fraction: f64,
    pub synthetic_max_rows: usize,
    /// Default seed of the dataset split. Notes §2 "Splits" (seed 42).
    pub split_seed: u64,
    /// Selection weight of a miner that has not competed today. WP §2.2 (2.0).
    pub first_daily_weight: f64,
    /// Floor of a miner's selection weight. WP §2.2 (0.01).
    pub min_selection_weight: f64,
    /// Relative probability of the top-ranked miner: rank i of n gets `top − (top − 1)·i/n`.
    /// WP §2.2 (3.0), notes §1.1 (`3 − 2i/|M|`).
    pub top_rank_chance: f64,
    /// Miners drawn per text task `[min, max]`. WP §2.7, notes §1.1 (`randint(8,15)`).
    pub text_pool: (usize, usize),
    /// Miners drawn per image task `[min, max]`. WP §2.7, notes §1.1 (`randint(15,25)`).
    pub image_pool: (usize, usize),
    /// Fewest available miners a task needs to start. Notes §1.1 ("minimum 1").
    pub min_miners: usize,
    /// Wait before retrying a task that lacked miners. Notes §1.1 (`TASK_TIME_DELAY` 15 min).
    pub delay_minutes: u32,
    /// Retries before an organic task gives up. Notes §1.1 (`MAX_DELAY_TIMES` 6). Synthetic
    /// tasks fail at once, as in the public code.
    pub max_delays: u32,
    /// Each delay extends the allocation: `hours · (1 + delay_extension)^delays`, so a task that
    /// waited stays as attractive (its task weight grows with hours). WP §2.7 names the rule but
    /// not its constants; this is ours.
    pub delay_extension: f64,
    /// Weight of the test loss in a text task's weighted loss. WP §2.5 (λ = 0.7).
    pub text_test_weight: f64,
    /// Weight of the text-guided loss in an image task's weighted loss. WP §2.5, notes §4 (0.25).
    pub image_text_guided_weight: f64,
    /// A text submission is flagged when its synth−test gap exceeds the task's median gap by
    /// this many population standard deviations of the test losses. WP §2.5 (0.5σ).
    pub suspicious_sigma: f64,
    /// Fewest remaining submissions for the suspicious-result check to run.
    pub suspicious_min_submissions: usize,
    /// Score of first place. Notes §5 (`FIRST_PLACE_SCORE=3`).
    pub first_place_score: f64,
    /// Score of the bottom quarter, failed and duplicate submissions. Notes §5 (`SCORE_PENALTY=-1`).
    pub penalty_score: f64,
    /// The bottom-quarter penalty applies only above this many ranked submissions. Notes §5 (8).
    pub penalty_min_ranked: usize,
    /// Share of ranked submissions penalised: `max(1, floor(share · n))`. Notes §5 (0.25).
    pub penalty_share: f64,
    /// Task weight `W = max(1, 2·√(hours·B))` with `B = min(cap, max(1, ⌊params_b⌋))`. WP §2.6, notes §5 (40).
    pub model_size_cap_b: f64,
    /// Leaderboard windows in days and their weights. WP §2.6 (1/3/7 days, 0.3/0.3/0.4).
    pub windows: Vec<Window>,
    /// Final transform `f = a·σ(k(x−s))^p + b·x`. WP §2.6, notes §5 "Normalisation".
    pub transform: Transform,
}

/// Relative frequency of each task type among synthetic tasks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskTypeMix {
    pub instruct: f64,
    pub image: f64,
    pub dpo: f64,
    pub grpo: f64,
}

impl TaskTypeMix {
    pub fn weight(&self, task_type: TaskType) -> f64 {
        match task_type {
            TaskType::InstructText => self.instruct,
            TaskType::Image => self.image,
            TaskType::Dpo => self.dpo,
            TaskType::Grpo => self.grpo,
        }
    }
}

/// Datasets with fewer than `rows_below` rows get whole hours in `[min_hours, max_hours]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HourBin {
    pub rows_below: u64,
    pub min_hours: u32,
    pub max_hours: u32,
}

/// A leaderboard window: tasks at most `days` old, weighted by `weight`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub days: u32,
    pub weight: f64,
}

/// Parameters of the sigmoid-plus-linear transform from quality to weight.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transform {
    pub sigmoid_weight: f64,
    pub linear_weight: f64,
    pub steepness: f64,
    pub shift: f64,
    pub power: f64,
}

impl Default for MechanismConfig {
    fn default() -> Self {
        Self {
            synthetic_task_mix: TaskTypeMix { instruct: 0.25, image: 0.25, dpo: 0.15, grpo: 0.35 },
            text_hour_bins: vec![
                HourBin { rows_below: 25_000, min_hours: 3, max_hours: 6 },
                HourBin { rows_below: 50_000, min_hours: 4, max_hours: 8 },
                HourBin { rows_below: 100_000, min_hours: 5, max_hours: 9 },
                HourBin { rows_below: 500_000, min_hours: 7, max_hours: 10 },
            ],
            image_hours: (1, 2),
            test_fraction: 0.10,
            test_max_rows: 1_000,
            synthetic_fraction: 0.05,
            synthetic_max_rows: 500,
            split_seed: 42,
            first_daily_weight: 2.0,
            min_selection_weight: 0.01,
            top_rank_chance: 3.0,
            text_pool: (8, 15),
            image_pool: (15, 25),
            min_miners: 1,
            delay_minutes: 15,
            max_delays: 6,
            delay_extension: 0.10,
            text_test_weight: 0.7,
            image_text_guided_weight: 0.25,
            suspicious_sigma: 0.5,
            suspicious_min_submissions: 3,
            first_place_score: 3.0,
            penalty_score: -1.0,
            penalty_min_ranked: 8,
            penalty_share: 0.25,
            model_size_cap_b: 40.0,
            windows: vec![
                Window { days: 1, weight: 0.3 },
                Window { days: 3, weight: 0.3 },
                Window { days: 7, weight: 0.4 },
            ],
            transform: Transform { sigmoid_weight: 0.7, linear_weight: 0.05, steepness: 9.0, shift: 0.5, power: 0.75 },
        }
    }
}

impl MechanismConfig {
    /// The longest window: records older than this no longer count.
    pub fn horizon_days(&self) -> u32 {
        self.windows.iter().map(|w| w.days).max().unwrap_or(0)
    }
}
