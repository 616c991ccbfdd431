//! Status conditions with `observedGeneration`, whose `lastTransitionTime` moves only when the
//! condition's status really changes: re-reconciling writes the same list, so no status patch
//! ever wakes the controller up again by itself.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// A condition as a reconcile computes it, before timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub type_: &'static str,
    /// `Some(true)` is `True`, `Some(false)` is `False`, `None` is `Unknown`.
    pub status: Option<bool>,
    pub reason: &'static str,
    pub message: String,
}

impl Observed {
    pub fn new(type_: &'static str, status: Option<bool>, reason: &'static str, message: impl Into<String>) -> Self {
        Observed { type_, status, reason, message: message.into() }
    }
}

fn status_word(status: Option<bool>) -> &'static str {
    match status {
        Some(true) => "True",
        Some(false) => "False",
        None => "Unknown",
    }
}

/// Merges `observed` into `previous`: one entry per type, in the order of `observed`; the
/// transition time is kept unless the status word changed.
pub fn merge(
    previous: &[Condition],
    observed: &[Observed],
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Vec<Condition> {
    observed
        .iter()
        .map(|o| {
            let status = status_word(o.status).to_string();
            let before = previous.iter().find(|c| c.type_ == o.type_);
            let last_transition_time = match before {
                Some(c) if c.status == status => c.last_transition_time.clone(),
                _ => to_time(now),
            };
            Condition {
                type_: o.type_.to_string(),
                status,
                reason: o.reason.to_string(),
                message: o.message.clone(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

pub fn to_time(at: DateTime<Utc>) -> Time {
    Time(Timestamp::from_second(at.timestamp()).unwrap_or(Timestamp::UNIX_EPOCH))
}

pub fn from_time(at: &Time) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(at.0.as_second(), 0)
}

/// True when `conditions` holds `type_` with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions.iter().any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(second, 0).unwrap()
    }

    #[test]
    fn transition_time_moves_only_when_the_status_changes() {
        let first = merge(&[], &[Observed::new("Trained", Some(false), "Running", "2 of 3")], Some(1), at(100));
        let same = merge(&first, &[Observed::new("Trained", Some(false), "Running", "1 of 3")], Some(2), at(200));
        assert_eq!(from_time(&same[0].last_transition_time), Some(at(100)));
        assert_eq!(same[0].message, "1 of 3");
        assert_eq!(same[0].observed_generation, Some(2));
        let flipped = merge(&same, &[Observed::new("Trained", Some(true), "AllFinished", "")], Some(2), at(300));
        assert_eq!(from_time(&flipped[0].last_transition_time), Some(at(300)));
        assert!(is_true(&flipped, "Trained"));
    }

    #[test]
    fn merging_the_same_observation_twice_is_a_fixed_point() {
        let observed = [Observed::new("A", None, "Waiting", "x"), Observed::new("B", Some(true), "Done", "y")];
        let once = merge(&[], &observed, Some(3), at(10));
        assert_eq!(merge(&once, &observed, Some(3), at(99)), once);
    }
}
