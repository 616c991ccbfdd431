//! Successive halving across miners (`spec.halving`): rungs, the cut, resuming, the record.

use super::*;
use crate::mechanism::halving::Halving;
use crate::mechanism::scoring::score_task;

const MINERS: [&str; 4] = ["alice", "bob", "carol", "dave"];

fn halving_spec() -> TaskSpec {
    TaskSpec {
        hours: Some(0.03), // 108 s: slices of 36 s and 72 s
        miners_per_task: Some(4),
        baseline: false,
        evaluate_base: false,
        halving: Some(Halving { eta: 2, rungs: 2 }),
        ..spec()
    }
}

fn run(state: &TaskState, obs: &Observation) -> Decision {
    decide("task-1", &halving_spec(), state, obs, &config())
}

fn observe(now: i64) -> Observation {
    let mut o = obs(secs(now));
    o.pool = pool(&MINERS);
    o
}

fn trainings(d: &Decision) -> Vec<(String, f64, Option<String>)> {
    d.actions
        .iter()
        .filter_map(|a| match a {
            Action::StartTraining { id, hours, resume_from, .. } => {
                Some((id.to_string(), *hours, resume_from.as_ref().map(ToString::to_string)))
            }
            _ => None,
        })
        .collect()
}

/// Every workload of `miner` in `rung` finished, its evaluation with `loss` (or failed).
fn finished(o: &mut Observation, miner: &str, rung: u32, loss: Option<f64>) {
    let at = |kind| id(kind, miner, 1).at_rung(rung);
    o.workloads.insert(at(WorkKind::Train), trained(30));
    o.workloads.insert(at(WorkKind::Seal), sealed(&format!("sha256:{miner}{rung}")));
    let evaluation = match loss {
        Some(loss) => evaluated(loss, loss),
        None => failed("evaluator refused the weights", false),
    };
    o.workloads.insert(at(WorkKind::Evaluate), evaluation);
}

fn first_rung() -> Decision {
    let mut o = observe(1);
    o.workloads.insert(id(WorkKind::Prepare, "", 1), prepared());
    let d = run(&run(&TaskState::default(), &observe(0)).state, &o);
    assert_eq!(d.state.phase, Phase::Training);
    d
}

#[test]
fn every_miner_trains_the_first_slice_from_the_base_model() {
    let d = first_rung();
    let mut started = trainings(&d);
    started.sort_by(|a, b| a.0.cmp(&b.0));
    let expected: Vec<(String, f64, Option<String>)> =
        MINERS.iter().map(|m| (format!("train-{m}-1"), 0.01, None)).collect();
    assert_eq!(started.len(), 4);
    for ((id, hours, resume), (want_id, want_hours, _)) in started.iter().zip(&expected) {
        assert_eq!(id, want_id);
        assert!((hours - want_hours).abs() < 1e-12, "{hours}");
        assert_eq!(resume, &None);
    }
    assert_eq!(d.state.hours, Some(0.03), "the record's hours stay the whole allotment");
}

#[test]
fn the_best_half_continue_from_their_checkpoints_and_the_rest_keep_their_last_loss() {
    let d = first_rung();
    let mut o = observe(50);
    finished(&mut o, "alice", 0, Some(1.0));
    finished(&mut o, "bob", 0, Some(2.0));
    finished(&mut o, "carol", 0, Some(0.5));
    finished(&mut o, "dave", 0, None);
    let d = run(&d.state, &o);
    assert_eq!((d.state.phase, d.state.rung), (Phase::Training, 1));
    let mut next = trainings(&d);
    next.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(next.iter().map(|t| t.0.as_str()).collect::<Vec<_>>(), ["train-alice-1-r1", "train-carol-1-r1"]);
    assert_eq!(next[1].2.as_deref(), Some("train-carol-1"), "carol continues from her own rung-0 training");
    assert!((next[1].1 - 0.02).abs() < 1e-12, "the second slice is twice the first: {}", next[1].1);
    let bob = d.state.entrant("bob").unwrap();
    assert_eq!(bob.eliminated_after, Some(0));
    assert!(outcome(bob).is_scored(), "bob keeps his rung-0 evaluation");
    assert_eq!(d.state.entrant("dave").unwrap().eliminated_after, None, "a failure is not a cut");
    let carol = d.state.entrant("carol").unwrap();
    assert_eq!(carol.rungs.len(), 1);
    assert_eq!(carol.rungs[0].weighted_loss, 0.5);
    assert!(d.actions.iter().any(|a| matches!(a, Action::Notify { reason, message }
        if reason == "Rung" && message.contains("carol (0.5000), alice (1.0000) continue") && message.contains("cut: bob"))));

    // The survivors' second slice is tracked under its own ids; a running one is not restarted.
    let mut o = observe(60);
    o.workloads.insert(id(WorkKind::Train, "carol", 1).at_rung(1), WorkloadState::Running { started_at: secs(55) });
    let d = run(&d.state, &o);
    assert!(trainings(&d).iter().all(|t| t.0 != "train-carol-1-r1"));
    assert_eq!(d.wake_at, Some(secs(55 + 72 + 10)), "the slice's own deadline and the grace");

    // Survivors rank above the cut whatever their last losses: carol got worse than bob.
    let mut o = observe(200);
    finished(&mut o, "alice", 1, Some(0.9));
    finished(&mut o, "carol", 1, Some(3.0));
    let d = run(&d.state, &o);
    assert_eq!(d.state.phase, Phase::Recording);
    let record = task_record("task-1", &halving_spec(), &d.state).unwrap();
    let rung = |m: &str| record.submissions.iter().find(|s| s.miner == m).unwrap().rung;
    assert_eq!((rung("alice"), rung("bob"), rung("dave")), (Some(1), Some(0), Some(0)));
    assert_eq!(record.hours, 0.03);
    let scored = score_task(&config().mechanism, &record);
    let place = |m: &str| scored.submissions.iter().find(|s| s.miner == m).unwrap().rank;
    assert_eq!((place("alice"), place("carol"), place("bob"), place("dave")), (Some(1), Some(2), Some(3), None));
}

#[test]
fn a_rung_without_any_scored_miner_ends_the_task() {
    let d = first_rung();
    let mut o = observe(50);
    for m in MINERS {
        finished(&mut o, m, 0, None);
    }
    let d = run(&d.state, &o);
    assert_eq!(d.state.rung, 0);
    assert!(trainings(&d).is_empty());
    assert!(matches!(d.state.phase, Phase::Recording | Phase::Failed), "{:?}", d.state.phase);
}

#[test]
fn a_later_rung_never_names_the_same_thing_as_another_miners_first() {
    // Miner `a` in rung 1 and a miner called `a-r1` in rung 0: their files and objects differ.
    let later = id(WorkKind::Train, "a", 1).at_rung(1).to_string();
    let other = id(WorkKind::Train, "a-r1", 1).to_string();
    assert_ne!(later, other);
    assert_eq!((later.as_str(), other.as_str()), ("train-a-1-r1", "train-a-r1-1"));
}
