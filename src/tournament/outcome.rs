//! What became of one entrant, derived once: the scores that are its own (only from an
//! evaluator result that says `ok`) or why it has none. The record, the decision to fail a
//! task, the operator's Evaluation and the local report all read it from here.

use super::eval_report::EvalReport;
use super::observe::{SealSummary, TrainingSummary, WorkOutput};
use super::state::{Entrant, Work};

/// The losses an entrant is scored on, as its evaluator reported them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scores {
    pub test_loss: Option<f64>,
    pub synth_loss: Option<f64>,
    pub text_guided_loss: Option<f64>,
    pub no_text_loss: Option<f64>,
    pub weights_sha256: Option<String>,
}

/// One entrant's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome<'a> {
    /// The evaluator's result, usable or not (its checks explain a refusal).
    pub report: Option<&'a EvalReport>,
    /// Its scores: `Some` only when the evaluator's result is `ok`.
    pub scores: Option<Scores>,
    /// Why it has no scores: the first thing that went wrong, in order (training, evaluation,
    /// the evaluator's verdict). `None` while it has scores or is still in progress.
    pub failure: Option<String>,
    pub training: Option<&'a TrainingSummary>,
    /// The sealed model that was evaluated.
    pub sealed: Option<&'a SealSummary>,
}

impl Outcome<'_> {
    pub fn is_scored(&self) -> bool {
        self.scores.is_some()
    }
}

/// The outcome of `entrant` in its current state.
pub fn outcome(entrant: &Entrant) -> Outcome<'_> {
    let report = match entrant.evaluation.output() {
        Some(WorkOutput::Evaluated(report)) => Some(report),
        _ => None,
    };
    let training = match entrant.training.output() {
        Some(WorkOutput::Trained(summary)) => Some(summary),
        _ => None,
    };
    let sealed = match entrant.seal.output() {
        Some(WorkOutput::Sealed(summary)) => Some(summary),
        _ => None,
    };
    let scores = report.filter(|r| r.ok).map(|r| Scores {
        test_loss: r.test_loss,
        synth_loss: r.synth_loss,
        text_guided_loss: r.text_guided_loss,
        no_text_loss: r.no_text_loss,
        weights_sha256: r.weights_sha256.clone(),
    });
    // A reference that is not trained (the base model) has not failed its training.
    let training_failed = match &entrant.training {
        Work::Failed { reason, .. } => Some(reason.clone()),
        _ => None,
    };
    let failure = if scores.is_some() {
        None
    } else {
        training_failed
            .or_else(|| entrant.evaluation.failure().map(str::to_string))
            .or_else(|| report.and_then(EvalReport::failure_reason))
    };
    Outcome { report, scores, failure, training, sealed }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::tournament::Role;

    fn failed(reason: &str) -> Work {
        Work::Failed {
            attempt: 1,
            finished_at: Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap(),
            reason: reason.into(),
            log_tail: String::new(),
        }
    }

    fn evaluated(report: EvalReport) -> Work {
        let at = Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap();
        Work::Succeeded { attempt: 1, started_at: at, finished_at: at, output: WorkOutput::Evaluated(report) }
    }

    #[test]
    fn scores_come_only_from_an_ok_result_and_failures_name_the_first_cause() {
        let mut alice = Entrant::new("alice", Role::Miner, None);
        alice.training = failed("trainer exited with code 1");
        alice.evaluation = Work::NotNeeded { reason: "not evaluated".into() };
        let o = outcome(&alice);
        assert_eq!(o.failure.as_deref(), Some("trainer exited with code 1"));
        assert!(!o.is_scored());

        let mut bob = Entrant::new("bob", Role::Miner, None);
        bob.evaluation = evaluated(EvalReport {
            ok: false,
            test_loss: Some(0.1),
            failure: Some("weights are a pickle".into()),
            ..EvalReport::default()
        });
        let o = outcome(&bob);
        assert_eq!((o.scores.clone(), o.failure.as_deref()), (None, Some("weights are a pickle")));
        assert!(o.report.is_some(), "a refusal keeps the evaluator's result for its checks");

        bob.evaluation = evaluated(EvalReport { ok: true, test_loss: Some(1.5), ..EvalReport::default() });
        let o = outcome(&bob);
        assert_eq!(o.scores.unwrap().test_loss, Some(1.5));
        assert_eq!(o.failure, None);

        let mut base = Entrant::new("base-model", Role::BaseModel, None);
        assert_eq!(outcome(&base).failure, None, "the untrained base model did not fail its training");
        base.evaluation = failed("evaluator exited with code 1");
        assert_eq!(outcome(&base).failure.as_deref(), Some("evaluator exited with code 1"));
    }
}
