//! Successive halving across miners (an extension of the paper, off by default): every
//! selected miner trains a first slice of the allotment, the evaluator scores them, the best
//! 1/η continue from their own checkpoint for the next, longer slice, and so on. The slices
//! grow by η, so a miner that survives every rung trains for the whole allotment
//! (`hours · η^r / Σ η^j` for rung `r`) while the field shrinks by η per rung.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `spec.halving`: how hard and how often the field is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Halving {
    /// The field shrinks by this factor at each rung (the best ⌈n/η⌉ continue): 2 or 3.
    #[schemars(range(min = 2, max = 3))]
    pub eta: u32,
    /// Slices of the allotment, the last one trained by the survivors only: 2 to 5.
    #[schemars(range(min = 2, max = 5))]
    pub rungs: u32,
}

impl Halving {
    pub const ETAS: std::ops::RangeInclusive<u32> = 2..=3;
    pub const RUNGS: std::ops::RangeInclusive<u32> = 2..=5;

    /// The field and the value that is out of range, for an error naming it.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !Self::ETAS.contains(&self.eta) {
            return Err(("spec.halving.eta", format!("must be 2 or 3, found {}", self.eta)));
        }
        if !Self::RUNGS.contains(&self.rungs) {
            return Err(("spec.halving.rungs", format!("must be between 2 and 5, found {}", self.rungs)));
        }
        Ok(())
    }
}

/// One rung of a plan: how many miners train in it and for how long.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rung {
    pub miners: usize,
    pub hours: f64,
}

/// The rungs for `miners` selected miners and an allotment of `hours` per miner. The slices
/// add up to `hours`; rung `r` keeps `⌈miners / η^r⌉` miners (at least one).
pub fn plan(halving: Halving, miners: usize, hours: f64) -> Vec<Rung> {
    let eta = f64::from(halving.eta.max(2));
    let rungs = halving.rungs.max(1);
    let total: f64 = (0..rungs).map(|r| eta.powi(r as i32)).sum();
    let mut field = miners;
    (0..rungs)
        .map(|r| {
            if r > 0 {
                field = survivors(halving, field);
            }
            Rung { miners: field, hours: hours * eta.powi(r as i32) / total }
        })
        .collect()
}

/// How many of `field` miners continue to the next rung: `⌈field / η⌉`, at least one.
pub fn survivors(halving: Halving, field: usize) -> usize {
    field.div_ceil(halving.eta.max(2) as usize).max(1)
}

/// Training time of the plan as a share of a full tournament's (every miner the whole allotment).
pub fn training_share(rungs: &[Rung]) -> f64 {
    let Some(first) = rungs.first() else { return 0.0 };
    let full: f64 = rungs.iter().map(|r| r.hours).sum::<f64>() * first.miners as f64;
    if full <= 0.0 { 0.0 } else { rungs.iter().map(|r| r.miners as f64 * r.hours).sum::<f64>() / full }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn halving(eta: u32, rungs: u32) -> Halving {
        Halving { eta, rungs }
    }

    #[test]
    fn eight_miners_halved_three_times_train_for_three_sevenths_of_a_tournament() {
        let rungs = plan(halving(2, 3), 8, 7.0);
        assert_eq!(rungs.iter().map(|r| r.miners).collect::<Vec<_>>(), vec![8, 4, 2]);
        assert_eq!(rungs.iter().map(|r| r.hours).collect::<Vec<_>>(), vec![1.0, 2.0, 4.0]);
        assert!((training_share(&rungs) - 3.0 / 7.0).abs() < 1e-12, "{}", training_share(&rungs));
    }

    #[test]
    fn an_uneven_field_rounds_survivors_up_and_never_below_one() {
        let rungs = plan(halving(3, 3), 5, 1.3);
        assert_eq!(rungs.iter().map(|r| r.miners).collect::<Vec<_>>(), vec![5, 2, 1]);
        assert_eq!(plan(halving(2, 4), 1, 1.0).iter().map(|r| r.miners).collect::<Vec<_>>(), vec![1, 1, 1, 1]);
    }

    #[test]
    fn out_of_range_settings_name_their_field() {
        assert_eq!(halving(4, 3).check().unwrap_err().0, "spec.halving.eta");
        assert_eq!(halving(2, 1).check().unwrap_err().0, "spec.halving.rungs");
        assert_eq!(halving(2, 6).check().unwrap_err().0, "spec.halving.rungs");
        assert!(halving(3, 5).check().is_ok());
    }

    proptest! {
        #[test]
        fn slices_add_up_to_the_allotment_and_the_field_only_shrinks(
            eta in 2u32..=3, rungs in 2u32..=5, miners in 1usize..64, hours in 0.001f64..48.0,
        ) {
            let plan = plan(halving(eta, rungs), miners, hours);
            prop_assert_eq!(plan.len(), rungs as usize);
            let sum: f64 = plan.iter().map(|r| r.hours).sum();
            prop_assert!((sum - hours).abs() < 1e-9 * hours.max(1.0));
            prop_assert_eq!(plan[0].miners, miners);
            for pair in plan.windows(2) {
                prop_assert!(pair[1].miners <= pair[0].miners && pair[1].miners >= 1);
                prop_assert!(pair[1].hours > pair[0].hours);
            }
            let share = training_share(&plan);
            prop_assert!(share > 0.0 && share <= 1.0 + 1e-12);
        }
    }
}
