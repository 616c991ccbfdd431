//! Which miners compete on a task (WP §2.2), and what happens when too few are available (WP §2.7).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{MechanismConfig, TaskType};

/// A miner that could be offered the task.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub miner: String,
    /// Mean of the miner's task scores over the last day; `None` when it has not competed today.
    pub average_quality_today: Option<f64>,
}

/// Selection weight: first daily participation gets 2.0, otherwise the day's average quality,
/// floored at 0.01 so nobody is locked out.
pub fn selection_weight(config: &MechanismConfig, average_quality_today: Option<f64>) -> f64 {
    match average_quality_today {
        None => config.first_daily_weight,
        Some(quality) if quality.is_finite() => quality.max(config.min_selection_weight),
        Some(_) => config.min_selection_weight,
    }
}

/// Candidates sorted by selection weight, best first (ties by miner id, for determinism).
pub fn rank_candidates<'a>(config: &MechanismConfig, candidates: &'a [Candidate]) -> Vec<&'a Candidate> {
    let mut ranked: Vec<(&Candidate, f64)> =
        candidates.iter().map(|c| (c, selection_weight(config, c.average_quality_today))).collect();
    ranked.sort_by(|(a, wa), (b, wb)| wb.total_cmp(wa).then_with(|| a.miner.cmp(&b.miner)));
    ranked.into_iter().map(|(c, _)| c).collect()
}

/// Relative probability of rank `i` (from 0) among `n`: `3 − 2·i/n` with the default chance.
pub fn rank_probability(config: &MechanismConfig, rank: usize, n: usize) -> f64 {
    let top = config.top_rank_chance;
    top - (top - 1.0) * rank as f64 / n as f64
}

/// How many miners a task of this type wants, drawn uniformly inside the configured pool range.
pub fn pool_size(config: &MechanismConfig, task_type: TaskType, seed: u64) -> usize {
    let (low, high) = if task_type.is_text() { config.text_pool } else { config.image_pool };
    ChaCha8Rng::seed_from_u64(seed).random_range(low..=high.max(low))
}

/// Draws `k` distinct miners, each draw proportional to the rank probability of those left.
///
/// The result is in draw order, which is also the order to offer the task in: the public code
/// built this list and then offered with `pop()` from its end, so the lowest-ranked miners were
/// asked first (notes §1.1). Here the first drawn is the first offered.
pub fn select_miners(config: &MechanismConfig, candidates: &[Candidate], k: usize, seed: u64) -> Vec<String> {
    let ranked = rank_candidates(config, candidates);
    let n = ranked.len();
    let mut remaining: Vec<(usize, f64)> = (0..n).map(|i| (i, rank_probability(config, i, n))).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut chosen = Vec::with_capacity(k.min(n));
    while chosen.len() < k && !remaining.is_empty() {
        let total: f64 = remaining.iter().map(|(_, p)| p).sum();
        let mut point = rng.random::<f64>() * total;
        let mut pick = remaining.len() - 1;
        for (slot, (_, p)) in remaining.iter().enumerate() {
            if point < *p {
                pick = slot;
                break;
            }
            point -= p;
        }
        let (rank, _) = remaining.remove(pick);
        chosen.push(ranked[rank].miner.clone());
    }
    chosen
}

/// What to do with a task given how many miners are available.
#[derive(Debug, Clone, PartialEq)]
pub enum Staffing {
    /// Enough miners: start now with these hours.
    Proceed { hours: f64 },
    /// Too few: try again after `retry_after_minutes` with the extended allocation `hours`.
    Delay { retry_after_minutes: u32, hours: f64, delays: u32 },
    /// Too few, and no retries left (synthetic tasks have none).
    GiveUp { reason: String },
}

/// The delay rule. After `delays_so_far` delays a task runs with `hours · 1.1^delays_so_far`;
/// a task that still lacks miners waits 15 minutes, up to 6 times, then gives up.
pub fn staffing(
    config: &MechanismConfig,
    available: usize,
    base_hours: f64,
    delays_so_far: u32,
    synthetic: bool,
) -> Staffing {
    let extended = |delays: u32| base_hours * (1.0 + config.delay_extension).powi(delays as i32);
    if available >= config.min_miners.max(1) {
        return Staffing::Proceed { hours: extended(delays_so_far) };
    }
    if synthetic {
        return Staffing::GiveUp {
            reason: format!("synthetic task: {available} miner(s) available, {} needed", config.min_miners.max(1)),
        };
    }
    if delays_so_far >= config.max_delays {
        return Staffing::GiveUp {
            reason: format!(
                "{available} miner(s) available after {delays_so_far} delays, {} needed",
                config.min_miners.max(1)
            ),
        };
    }
    let delays = delays_so_far + 1;
    Staffing::Delay { retry_after_minutes: config.delay_minutes, hours: extended(delays), delays }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> MechanismConfig {
        MechanismConfig::default()
    }

    fn candidate(miner: &str, quality: Option<f64>) -> Candidate {
        Candidate { miner: miner.to_string(), average_quality_today: quality }
    }

    #[test]
    fn selection_weights_by_hand() {
        let cases = [
            (None, 2.0),
            (Some(0.8), 0.8),
            (Some(0.0), 0.01),
            (Some(-3.0), 0.01),
            (Some(f64::NAN), 0.01),
            (Some(2.5), 2.5),
        ];
        for (quality, weight) in cases {
            assert_eq!(selection_weight(&config(), quality), weight, "{quality:?}");
        }
    }

    #[test]
    fn rank_probabilities_by_hand() {
        let p: Vec<f64> = (0..4).map(|i| rank_probability(&config(), i, 4)).collect();
        assert_eq!(p, vec![3.0, 2.5, 2.0, 1.5]);
    }

    #[test]
    fn ranking_puts_newcomers_and_good_miners_first() {
        let pool = [
            candidate("low", Some(0.1)),
            candidate("new", None),
            candidate("mid", Some(1.0)),
            candidate("bad", Some(-1.0)),
        ];
        let ranked: Vec<&str> = rank_candidates(&config(), &pool).iter().map(|c| c.miner.as_str()).collect();
        assert_eq!(ranked, vec!["new", "mid", "low", "bad"]);
    }

    #[test]
    fn the_first_offer_goes_to_a_high_ranked_miner_most_often() {
        // The public code's pop() offered the last-ranked first. Here the first drawn is the
        // most likely to be the top miner: 3.0 / (3.0 + 2.0 + …) of the time.
        let pool: Vec<Candidate> = (0..10).map(|i| candidate(&format!("m{i}"), Some(1.0 - i as f64 * 0.05))).collect();
        let firsts = (0..4_000).filter(|seed| select_miners(&config(), &pool, 3, *seed)[0] == "m0").count();
        let lasts = (0..4_000).filter(|seed| select_miners(&config(), &pool, 3, *seed)[0] == "m9").count();
        assert!(firsts > 2 * lasts, "top first {firsts} times, bottom first {lasts} times");
    }

    #[test]
    fn staffing_proceeds_delays_and_gives_up() {
        assert_eq!(staffing(&config(), 3, 4.0, 0, false), Staffing::Proceed { hours: 4.0 });
        assert_eq!(
            staffing(&config(), 0, 4.0, 0, false),
            Staffing::Delay { retry_after_minutes: 15, hours: 4.4, delays: 1 }
        );
        match staffing(&config(), 0, 4.0, 2, false) {
            Staffing::Delay { hours, delays: 3, .. } => assert!((hours - 4.0 * 1.331).abs() < 1e-9),
            other => panic!("expected a third delay, got {other:?}"),
        }
        match staffing(&config(), 1, 4.0, 2, false) {
            Staffing::Proceed { hours } => assert!((hours - 4.84).abs() < 1e-9),
            other => panic!("expected to proceed, got {other:?}"),
        }
        assert!(matches!(staffing(&config(), 0, 4.0, 6, false), Staffing::GiveUp { .. }));
        assert!(matches!(staffing(&config(), 0, 4.0, 0, true), Staffing::GiveUp { .. }));
    }

    #[test]
    fn pool_sizes_stay_in_range() {
        for seed in 0..200 {
            assert!((8..=15).contains(&pool_size(&config(), TaskType::Dpo, seed)));
            assert!((15..=25).contains(&pool_size(&config(), TaskType::Image, seed)));
        }
    }
}
