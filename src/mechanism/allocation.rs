//! What a task is given: its type (for synthetic tasks), its hours and its dataset split.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{MechanismConfig, TaskType};

/// Draws the type of a synthetic task from the configured mix, from a uniform `u` in `[0, 1)`.
pub fn synthetic_task_type(config: &MechanismConfig, u: f64) -> TaskType {
    let mix = &config.synthetic_task_mix;
    let total: f64 = TaskType::ALL.iter().map(|t| mix.weight(*t)).sum();
    let mut threshold = u * total;
    for task_type in TaskType::ALL {
        threshold -= mix.weight(task_type);
        if threshold < 0.0 {
            return task_type;
        }
    }
    // Only reached through rounding at u → 1: the last type with any weight.
    TaskType::ALL.into_iter().rev().find(|t| mix.weight(*t) > 0.0).unwrap_or(TaskType::InstructText)
}

/// Whole hours for a task, uniform inside its bin, deterministic for a seed.
/// Text tasks are binned by dataset rows; image tasks use the image range whatever their size.
pub fn allocate_hours(config: &MechanismConfig, task_type: TaskType, dataset_rows: u64, seed: u64) -> u32 {
    let (low, high) = hour_range(config, task_type, dataset_rows);
    ChaCha8Rng::seed_from_u64(seed).random_range(low..=high.max(low))
}

/// The `[min, max]` whole hours a task of this type and size may get.
pub fn hour_range(config: &MechanismConfig, task_type: TaskType, dataset_rows: u64) -> (u32, u32) {
    if !task_type.is_text() {
        return config.image_hours;
    }
    let bin = config.text_hour_bins.iter().find(|bin| dataset_rows < bin.rows_below).or(config.text_hour_bins.last());
    bin.map_or((1, 1), |bin| (bin.min_hours, bin.max_hours))
}

/// How many rows go to each split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitSizes {
    pub train: usize,
    pub test: usize,
    pub synthetic: usize,
}

/// Split sizes for a dataset of `rows` rows. Test is `min(10 %, 1000)` rows (at least one when
/// there are two rows or more); image tasks round the test share up and have no synthetic set,
/// because their synthetic pairs would need a generator model. Train keeps at least one row.
pub fn split_sizes(config: &MechanismConfig, task_type: TaskType, rows: usize) -> SplitSizes {
    if rows < 2 {
        return SplitSizes { train: rows, test: 0, synthetic: 0 };
    }
    let share = |fraction: f64, cap: usize, round_up: bool| -> usize {
        let exact = fraction * rows as f64;
        let n = if round_up { exact.ceil() } else { exact.floor() } as usize;
        n.clamp(1, cap.max(1))
    };
    let test = share(config.test_fraction, config.test_max_rows, !task_type.is_text());
    let synthetic = if task_type.is_text() && rows >= 3 {
        share(config.synthetic_fraction, config.synthetic_max_rows, false)
    } else {
        0
    };
    let held_out = (test + synthetic).min(rows - 1);
    let synthetic = held_out - test.min(held_out);
    let test = held_out - synthetic;
    SplitSizes { train: rows - held_out, test, synthetic }
}

/// Row indices of each split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitPlan {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
    pub synthetic: Vec<usize>,
}

/// Assigns rows `0..rows` to the splits: a seeded shuffle, then test, synthetic and train in
/// that order. Each split is returned in ascending row order, so files keep the dataset's order.
pub fn split_rows(config: &MechanismConfig, task_type: TaskType, rows: usize, seed: u64) -> SplitPlan {
    let sizes = split_sizes(config, task_type, rows);
    let mut order: Vec<usize> = (0..rows).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let mut take = |n: usize| -> Vec<usize> {
        let mut part: Vec<usize> = order.drain(..n).collect();
        part.sort_unstable();
        part
    };
    let test = take(sizes.test);
    let synthetic = take(sizes.synthetic);
    let train = take(sizes.train);
    SplitPlan { train, test, synthetic }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> MechanismConfig {
        MechanismConfig::default()
    }

    #[test]
    fn task_mix_follows_the_configured_shares() {
        let cases = [
            (0.0, TaskType::InstructText),
            (0.2499, TaskType::InstructText),
            (0.25, TaskType::Dpo),
            (0.3999, TaskType::Dpo),
            (0.40, TaskType::Grpo),
            (0.7499, TaskType::Grpo),
            (0.75, TaskType::Image),
            (0.9999, TaskType::Image),
        ];
        for (u, expected) in cases {
            assert_eq!(synthetic_task_type(&config(), u), expected, "u = {u}");
        }
    }

    #[test]
    fn hours_follow_the_papers_bins() {
        let cases = [
            (10_000, (3, 6)),
            (24_999, (3, 6)),
            (25_000, (4, 8)),
            (49_999, (4, 8)),
            (50_000, (5, 9)),
            (100_000, (7, 10)),
            (2_000_000, (7, 10)),
        ];
        for (rows, range) in cases {
            assert_eq!(hour_range(&config(), TaskType::Dpo, rows), range, "rows = {rows}");
        }
        assert_eq!(hour_range(&config(), TaskType::Image, 1_000_000), (1, 2));
    }

    #[test]
    fn hours_are_seeded_whole_hours_that_cover_the_bin() {
        let drawn: std::collections::BTreeSet<u32> =
            (0..200).map(|seed| allocate_hours(&config(), TaskType::InstructText, 30_000, seed)).collect();
        assert_eq!(drawn.into_iter().collect::<Vec<_>>(), vec![4, 5, 6, 7, 8]);
        assert_eq!(
            allocate_hours(&config(), TaskType::Grpo, 70_000, 7),
            allocate_hours(&config(), TaskType::Grpo, 70_000, 7)
        );
    }

    #[test]
    fn split_sizes_by_hand() {
        let text = |rows| split_sizes(&config(), TaskType::InstructText, rows);
        assert_eq!(text(100), SplitSizes { train: 85, test: 10, synthetic: 5 });
        assert_eq!(text(50_000), SplitSizes { train: 48_500, test: 1_000, synthetic: 500 });
        assert_eq!(text(15), SplitSizes { train: 13, test: 1, synthetic: 1 });
        assert_eq!(text(2), SplitSizes { train: 1, test: 1, synthetic: 0 });
        assert_eq!(text(1), SplitSizes { train: 1, test: 0, synthetic: 0 });
        assert_eq!(split_sizes(&config(), TaskType::Image, 12), SplitSizes { train: 10, test: 2, synthetic: 0 });
    }

    #[test]
    fn splits_are_disjoint_complete_and_deterministic() {
        let plan = split_rows(&config(), TaskType::Dpo, 1_234, 42);
        let mut all: Vec<usize> = plan.train.iter().chain(&plan.test).chain(&plan.synthetic).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1_234).collect::<Vec<_>>());
        assert_eq!((plan.test.len(), plan.synthetic.len()), (123, 61));
        assert_eq!(plan, split_rows(&config(), TaskType::Dpo, 1_234, 42));
        assert_ne!(plan.test, split_rows(&config(), TaskType::Dpo, 1_234, 43).test);
    }
}
