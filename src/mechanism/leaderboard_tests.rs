use chrono::TimeZone;

use super::*;
use crate::mechanism::TaskType;
use crate::mechanism::records::SubmissionRecord;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap()
}

fn sub(miner: &str, test: f64) -> SubmissionRecord {
    SubmissionRecord {
        miner: miner.into(),
        submitted_at: now() - Duration::days(30),
        test_loss: Some(test),
        synth_loss: Some(test),
        text_guided_loss: None,
        no_text_loss: None,
        weights_sha256: None,
        rung: None,
    }
}

fn task(id: &str, age: Duration, params: f64, subs: Vec<SubmissionRecord>) -> TaskRecord {
    TaskRecord {
        id: id.into(),
        task_type: TaskType::InstructText,
        model_params_b: params,
        hours: 1.0,
        finished_at: now() - age,
        submissions: subs,
    }
}

/// The worked example: A (12 h old, W 2): a first; B (2 days, W 4): b first; C (5 days, W 2):
/// c first, a failed; D (8 days) and E (in the future) are outside every window.
fn worked_example() -> Vec<TaskRecord> {
    vec![
        task("A", Duration::hours(12), 1.0, vec![sub("a", 1.0), sub("b", 2.0)]),
        task("B", Duration::days(2), 4.0, vec![sub("a", 2.0), sub("b", 1.0)]),
        task("C", Duration::days(5), 1.0, vec![sub("c", 1.0), sub("a", f64::NAN)]),
        task("D", Duration::days(8), 1.0, vec![sub("old", 1.0)]),
        task("E", -Duration::hours(1), 1.0, vec![sub("future", 1.0)]),
    ]
}

#[test]
fn worked_example_window_sums_qualities_and_weights() {
    let board = compute(&MechanismConfig::default(), now(), &worked_example());
    let names: Vec<&str> = board.miners.iter().map(|m| m.miner.as_str()).collect();
    assert_eq!(names, vec!["a", "b", "c"]);
    let sums: Vec<Vec<f64>> = board.miners.iter().map(|m| m.window_sums.clone()).collect();
    assert_eq!(sums, vec![vec![6.0, 6.0, 4.0], vec![0.0, 12.0, 12.0], vec![0.0, 0.0, 6.0]]);
    // Q(a) = 0.3·6/6 + 0.3·6/12 + 0.4·4/12; Q(b) = 0.3 + 0.4; Q(c) = 0.4·6/12.
    let expected_q = [0.3 + 0.15 + 0.4 / 3.0, 0.7, 0.2];
    let expected_w = [0.4412761296201867, 0.45827550852411847, 0.10044836185569474];
    for (m, miner) in board.miners.iter().enumerate() {
        assert!((miner.quality - expected_q[m]).abs() < 1e-12, "{}", miner.miner);
        assert!((miner.weight - expected_w[m]).abs() < 1e-12, "{}", miner.miner);
    }
    let u16s: Vec<u16> = board.miners.iter().map(|m| m.weight_u16).collect();
    assert_eq!(u16s, vec![63104, 65535, 14364]);
    // Every input task is scored, even those outside the windows.
    assert_eq!(board.tasks.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), vec!["A", "B", "C", "D", "E"]);
}

#[test]
fn window_edges_are_inclusive() {
    let exactly_seven = task("T", Duration::days(7), 1.0, vec![sub("a", 1.0)]);
    let board = compute(&MechanismConfig::default(), now(), &[exactly_seven]);
    assert_eq!(board.miners[0].window_sums, vec![0.0, 0.0, 6.0]);
    let just_over = task("T", Duration::days(7) + Duration::seconds(1), 1.0, vec![sub("a", 1.0)]);
    assert!(compute(&MechanismConfig::default(), now(), &[just_over]).miners.is_empty());
}

#[test]
fn all_negative_or_zero_scores_give_all_zero_weights() {
    let only_failures = task("T", Duration::hours(1), 1.0, vec![sub("a", f64::NAN), sub("b", f64::INFINITY)]);
    let board = compute(&MechanismConfig::default(), now(), &[only_failures]);
    assert_eq!(board.miners.iter().map(|m| (m.weight, m.weight_u16)).collect::<Vec<_>>(), vec![(0.0, 0), (0.0, 0)]);
}

#[test]
fn transform_by_hand() {
    let t = MechanismConfig::default().transform;
    // x = 1: 0.7·σ(4.5)^0.75 + 0.05; x = 0.5: 0.7·0.5^0.75 + 0.025.
    let f1 = 0.7 * (1.0 / (1.0 + (-4.5f64).exp())).powf(0.75) + 0.05;
    let fh = 0.7 * 0.5f64.powf(0.75) + 0.025;
    let w = transform_weights(&t, &[2.0, 1.0, 0.0]);
    assert!((w[0] - f1 / (f1 + fh)).abs() < 1e-12);
    assert!((w[1] - fh / (f1 + fh)).abs() < 1e-12);
    assert_eq!(w[2], 0.0);
    assert_eq!(to_u16(&w)[0], 65535);
}
