use chrono::TimeZone;

use super::*;

fn config() -> MechanismConfig {
    MechanismConfig::default()
}

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 12, minute, 0).unwrap()
}

fn text(miner: &str, minute: u32, test: f64, synth: f64) -> SubmissionRecord {
    SubmissionRecord {
        miner: miner.into(),
        submitted_at: at(minute),
        test_loss: Some(test),
        synth_loss: Some(synth),
        text_guided_loss: None,
        no_text_loss: None,
        weights_sha256: None,
        rung: None,
    }
}

fn task(task_type: TaskType, submissions: Vec<SubmissionRecord>) -> TaskRecord {
    TaskRecord { id: "t".into(), task_type, model_params_b: 1.0, hours: 1.0, finished_at: at(59), submissions }
}

fn verdicts(score: &TaskScore) -> Vec<(&str, &str, f64)> {
    score.submissions.iter().map(|s| (s.miner.as_str(), s.status.label(), s.score)).collect()
}

#[test]
fn task_weights_by_hand() {
    let cases = [
        (0.5, 1.0, 2.0),                  // B = 1: 2·√1
        (7.9, 2.0, 2.0 * 14f64.sqrt()),   // B = 7
        (70.0, 4.0, 2.0 * 160f64.sqrt()), // B capped at 40
        (1.0, 0.1, 1.0),                  // 2·√0.1 < 1 → 1
        (3.0, 0.0, 1.0),
    ];
    for (params, hours, expected) in cases {
        assert!((task_weight(&config(), params, hours) - expected).abs() < 1e-12, "{params}B {hours}h");
    }
}

#[test]
fn weighted_losses_by_hand() {
    let c = config();
    assert!((weighted_loss(&c, TaskType::Dpo, (Some(1.0), Some(2.0))).unwrap() - 1.3).abs() < 1e-12);
    assert!((weighted_loss(&c, TaskType::Image, (Some(0.4), Some(0.8))).unwrap() - 0.7).abs() < 1e-12);
    assert_eq!(weighted_loss(&c, TaskType::Grpo, (Some(1.0), None)), None);
    assert_eq!(weighted_loss(&c, TaskType::Grpo, (Some(f64::NAN), Some(1.0))), None);
    assert_eq!(weighted_loss(&c, TaskType::Grpo, (Some(f64::INFINITY), Some(1.0))), None);
}

#[test]
fn first_place_takes_three_and_failures_are_penalised() {
    let mut broken = text("c", 3, 1.0, 1.0);
    broken.synth_loss = None;
    let score = score_task(
        &config(),
        &task(TaskType::InstructText, vec![text("a", 1, 2.0, 2.2), text("b", 2, 1.5, 1.6), broken]),
    );
    assert_eq!(verdicts(&score), vec![("a", "ranked", 0.0), ("b", "ranked", 3.0), ("c", "failed", -1.0)]);
    assert_eq!(score.submissions[1].rank, Some(1));
}

#[test]
fn failures_cost_nothing_when_nobody_is_ranked() {
    let mut broken = text("a", 1, 1.0, 1.0);
    broken.test_loss = Some(f64::NAN);
    let score = score_task(&config(), &task(TaskType::InstructText, vec![broken]));
    assert_eq!(verdicts(&score), vec![("a", "failed", 0.0)]);
}

#[test]
fn duplicates_keep_the_earliest_and_are_transitive() {
    // a~b share a hash, b~c share both losses: one group {a, b, c}; c is earliest.
    let mut a = text("a", 5, 1.0, 1.1);
    a.weights_sha256 = Some("h1".into());
    let mut b = text("b", 6, 2.0, 2.1);
    b.weights_sha256 = Some("h1".into());
    let c = text("c", 4, 2.0, 2.1);
    let d = text("d", 7, 3.0, 3.0);
    let score = score_task(&config(), &task(TaskType::Dpo, vec![a, b, c, d]));
    assert_eq!(
        verdicts(&score),
        vec![("a", "duplicate", -1.0), ("b", "duplicate", -1.0), ("c", "ranked", 3.0), ("d", "ranked", 0.0)]
    );
    assert_eq!(score.submissions[0].duplicate_of.as_deref(), Some("c"));
}

#[test]
fn duplicate_ties_on_time_keep_the_smaller_miner_id() {
    let score = score_task(&config(), &task(TaskType::Grpo, vec![text("z", 1, 1.0, 1.0), text("y", 1, 1.0, 1.0)]));
    assert_eq!(verdicts(&score), vec![("y", "ranked", 3.0), ("z", "duplicate", -1.0)]);
}

#[test]
fn one_equal_loss_is_not_a_duplicate() {
    let score = score_task(&config(), &task(TaskType::Grpo, vec![text("a", 1, 1.0, 1.0), text("b", 2, 1.0, 1.5)]));
    assert_eq!(verdicts(&score), vec![("a", "ranked", 3.0), ("b", "ranked", 0.0)]);
}

#[test]
fn suspicious_gap_is_flagged_against_the_median_gap() {
    // Test losses 1.0, 1.2, 1.4, 0.9: mean 1.125, σ = √0.036875 ≈ 0.19203. Gaps 0.1, 0.1, 0.1, 0.5;
    // median 0.1. Only d: 0.4 > 0.5σ ≈ 0.096. The shared +0.1 shift flags nobody.
    let subs = vec![text("a", 1, 1.0, 1.1), text("b", 2, 1.2, 1.3), text("c", 3, 1.4, 1.5), text("d", 4, 0.9, 1.4)];
    let score = score_task(&config(), &task(TaskType::InstructText, subs));
    assert_eq!(
        verdicts(&score),
        vec![("a", "ranked", 3.0), ("b", "ranked", 0.0), ("c", "ranked", 0.0), ("d", "flagged", 0.0)]
    );
}

#[test]
fn suspicious_check_needs_three_and_spread_and_skips_images() {
    let two = vec![text("a", 1, 1.0, 1.0), text("b", 2, 1.2, 9.0)];
    assert_eq!(
        score_task(&config(), &task(TaskType::InstructText, two)).submissions[1].status,
        SubmissionStatus::Ranked
    );
    let flat = vec![text("a", 1, 1.0, 1.0), text("b", 2, 1.0, 1.1), text("c", 3, 1.0, 9.0)];
    assert!(
        score_task(&config(), &task(TaskType::Dpo, flat))
            .submissions
            .iter()
            .all(|s| s.status == SubmissionStatus::Ranked)
    );
    let image = |miner: &str, minute, tg: f64, nt: f64| SubmissionRecord {
        test_loss: None,
        synth_loss: None,
        text_guided_loss: Some(tg),
        no_text_loss: Some(nt),
        ..text(miner, minute, 0.0, 0.0)
    };
    let imgs = vec![image("a", 1, 0.1, 0.1), image("b", 2, 0.2, 0.2), image("c", 3, 0.3, 0.9)];
    assert!(
        score_task(&config(), &task(TaskType::Image, imgs))
            .submissions
            .iter()
            .all(|s| s.status == SubmissionStatus::Ranked)
    );
}

#[test]
fn bottom_quarter_is_penalised_above_eight_ranked() {
    // Equal gaps (0.1) flag nobody. 9 ranked → max(1, ⌊2.25⌋) = 2 penalised; 8 → none.
    let subs = |n: u32| {
        (0..n).map(|i| text(&format!("m{i}"), i, 1.0 + i as f64 * 0.1, 1.1 + i as f64 * 0.1)).collect::<Vec<_>>()
    };
    let nine = score_task(&config(), &task(TaskType::InstructText, subs(9)));
    let scores: Vec<f64> = nine.submissions.iter().map(|s| s.score).collect();
    assert_eq!(scores, vec![3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0, -1.0]);
    let eight = score_task(&config(), &task(TaskType::InstructText, subs(8)));
    assert_eq!(eight.submissions.iter().filter(|s| s.score < 0.0).count(), 0);
    let twelve = score_task(&config(), &task(TaskType::InstructText, subs(12)));
    assert_eq!(twelve.submissions.iter().filter(|s| s.score < 0.0).count(), 3);
}

#[test]
fn loss_ties_rank_the_earlier_submission_first() {
    // Same weighted loss (0.7·1 + 0.3·2 = 0.7·1.3 + 0.3·1.3 = 1.3) but different pairs: not duplicates.
    let score =
        score_task(&config(), &task(TaskType::Dpo, vec![text("late", 9, 1.0, 2.0), text("early", 1, 1.3, 1.3)]));
    assert_eq!(verdicts(&score), vec![("early", "ranked", 3.0), ("late", "ranked", 0.0)]);
}

#[test]
fn adjusted_score_multiplies_by_task_weight() {
    let mut t = task(TaskType::Dpo, vec![text("a", 1, 1.0, 1.0), text("b", 2, f64::NAN, 1.0)]);
    t.model_params_b = 8.0;
    t.hours = 2.0;
    let score = score_task(&config(), &t);
    assert!((score.task_weight - 8.0).abs() < 1e-12);
    assert_eq!(score.submissions.iter().map(|s| s.adjusted_score).collect::<Vec<_>>(), vec![24.0, -8.0]);
}
