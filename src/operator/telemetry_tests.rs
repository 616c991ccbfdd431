use serde_json::json;

use super::*;
use crate::operator::metrics::Metrics;
use crate::tournament::{Entrant, Role, WorkOutput};

fn at(minute: i64) -> DateTime<Utc> {
    "2026-11-26T12:00:00Z".parse::<DateTime<Utc>>().unwrap() + chrono::Duration::minutes(minute)
}

fn leaderboard(ns: &str, name: &str, standings: &[(&str, f64, u16)], pushed: bool) -> Leaderboard {
    let standings: Vec<_> = standings
        .iter()
        .map(|(m, w, u)| json!({"miner": m, "quality": w * 2.0, "weight": w, "weightU16": u, "windowSums": [], "tasks": 2}))
        .collect();
    let weights: BTreeMap<String, u16> = standings
        .iter()
        .map(|s| (s["miner"].as_str().unwrap().to_string(), s["weightU16"].as_u64().unwrap() as u16))
        .collect();
    let digest = super::super::sink::Weights { at: at(0), weights }.digest();
    let push = pushed.then(|| json!({"at": at(5), "digest": digest, "sinks": ["configmap/w"]}));
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {},
        "status": {"tasks": 3, "minerCount": standings.len(), "standings": standings, "lastWeightPush": push},
    }))
    .unwrap()
}

fn submission(
    ns: &str,
    task: &str,
    miner: &str,
    finished: i64,
    training: Option<serde_json::Value>,
) -> MinerSubmission {
    serde_json::from_value(json!({
        "metadata": {"name": format!("{task}-{miner}"), "namespace": ns},
        "spec": {"task": task, "miner": miner, "taskType": "Dpo", "baseModelUri": "/m", "baseModelParamsB": 3,
            "dataUri": "/d", "artifactUri": "/a", "hours": 1, "gpus": 2, "gpuClass": "h100", "seed": 1},
        "status": {"phase": "Succeeded", "startedAt": at(finished - 10), "finishedAt": at(finished), "training": training},
    }))
    .unwrap()
}

fn evaluation(ns: &str, task: &str, finished: i64, results: &[(&str, f64, u32)]) -> Evaluation {
    let results: Vec<_> = results
        .iter()
        .map(|(m, loss, rank)| {
            json!({"miner": m, "state": "Evaluated", "testLoss": loss, "synthLoss": loss + 0.1,
                "weightedLoss": loss + 0.03, "status": "ranked", "rank": rank})
        })
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": task, "namespace": ns},
        "spec": {"task": task, "taskType": "Dpo", "origin": "Organic", "baseModelUri": "/m", "baseModelParamsB": 3,
            "hours": 1, "dataUri": "/d", "gpuClass": "h100", "submissions": []},
        "status": {"phase": "Complete", "finishedAt": at(finished), "results": results},
    }))
    .unwrap()
}

fn value(samples: &[Sample], gauge: &str, labels: &[&str]) -> Option<f64> {
    samples.iter().find(|s| s.gauge == gauge && s.labels == labels).map(|s| s.value)
}

/// The series lines of a scrape (no comments), tournament gauges only.
fn series(metrics: &Metrics) -> Vec<String> {
    let names: Vec<String> = GAUGES.iter().map(|g| format!("gradients_{}{{", g.name)).collect();
    metrics.render().lines().filter(|l| names.iter().any(|n| l.starts_with(n.as_str()))).map(str::to_string).collect()
}

#[test]
fn standings_trainings_and_losses_become_gauges_labelled_by_miner_never_by_task() {
    let boards = [leaderboard("ns", "main", &[("alice", 0.75, 65535), ("bob", 0.25, 21845)], true)];
    let report = json!({"steps": 40, "tokens": 12000, "tokensPerSecond": 600.0, "finalTrainLoss": 1.25,
        "wallSeconds": 600.0, "gpuSeconds": 1200.0});
    let submissions = [
        submission("ns", "t1", "alice", 10, Some(json!({"steps": 1}))),
        submission("ns", "t2", "alice", 20, Some(report)),
        submission("ns", "t2", "bob", 20, None),
    ];
    let evaluations =
        [evaluation("ns", "t1", 12, &[("alice", 2.0, 2)]), evaluation("ns", "t2", 22, &[("alice", 0.9, 1)])];
    let samples = snapshot(&refs(&boards), &refs(&submissions), &refs(&evaluations));
    assert_eq!(value(&samples, "leaderboard_miner_weight_ratio", &["ns", "main", "alice"]), Some(0.75));
    assert_eq!(value(&samples, "leaderboard_miner_quality", &["ns", "main", "bob"]), Some(0.5));
    assert_eq!(value(&samples, "leaderboard_weights_in_sync", &["ns", "main"]), Some(1.0));
    assert_eq!(value(&samples, "leaderboard_weights_pushed_timestamp_seconds", &["ns", "main"]), Some(seconds(at(5))));
    assert_eq!(value(&samples, "leaderboard_newest_record_timestamp_seconds", &["ns", "main"]), Some(seconds(at(22))));
    // The latest training and evaluation of each miner.
    assert_eq!(value(&samples, "trainer_steps", &["ns", "alice"]), Some(40.0));
    assert_eq!(value(&samples, "trainer_gpu_seconds", &["ns", "alice"]), Some(1200.0));
    assert_eq!(value(&samples, "trainer_tokens", &["ns", "bob"]), None, "bob's training has no report");
    assert_eq!(value(&samples, "miner_submissions", &["ns", "alice", "Succeeded"]), Some(2.0));
    assert_eq!(value(&samples, "evaluation_loss", &["ns", "alice", "test"]), Some(0.9));
    assert_eq!(value(&samples, "evaluation_rank", &["ns", "alice"]), Some(1.0));
    assert_eq!(value(&samples, "evaluation_results", &["ns", "ranked"]), Some(2.0));
    assert!(samples.iter().all(|s| !s.labels.iter().any(|l| l == "t1" || l == "t2")), "no task label: {samples:?}");

    // Rendered, then the leaderboard is deleted and the weights change elsewhere: its series go.
    let metrics = Metrics::new();
    metrics.set_tournament(&samples);
    let text = metrics.render();
    assert!(
        text.contains(
            r#"gradients_leaderboard_miner_weight_ratio{leaderboard="main",miner="alice",namespace="ns"} 0.75"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"gradients_trainer_tokens_per_second{miner="alice",namespace="ns"} 600"#), "{text}");
    let unsynced = [leaderboard("other", "b2", &[("carol", 1.0, 65535)], false)];
    metrics.set_tournament(&snapshot(&refs(&unsynced), &[], &[]));
    let now = series(&metrics);
    assert!(now.iter().all(|l| !l.contains(r#"leaderboard="main""#) && !l.contains("alice")), "{now:?}");
    assert!(
        now.contains(&r#"gradients_leaderboard_weights_in_sync{leaderboard="b2",namespace="other"} 0"#.to_string())
    );
}

/// The metrics after a week of `tasks` tasks: `miners` miners, 8 per task, every task evaluated
/// and its trainers reported, one Leaderboard.
fn week(tasks: usize, miners: usize) -> Metrics {
    let name = |i: usize| format!("miner-{i:04}");
    let mut submissions = Vec::new();
    let mut evaluations = Vec::new();
    for t in 0..tasks {
        let entrants: Vec<String> = (0..8).map(|k| name((t * 8 + k) % miners)).collect();
        let report = json!({"steps": 10, "tokens": 100, "tokensPerSecond": 1.0, "finalTrainLoss": 1.0,
            "wallSeconds": 100.0, "gpuSeconds": 200.0});
        for m in &entrants {
            submissions.push(submission("ns", &format!("t{t}"), m, t as i64, Some(report.clone())));
        }
        let results: Vec<(&str, f64, u32)> =
            entrants.iter().enumerate().map(|(k, m)| (m.as_str(), 1.0 + k as f64, k as u32 + 1)).collect();
        evaluations.push(evaluation("ns", &format!("t{t}"), t as i64, &results));
    }
    let standings: Vec<(String, f64, u16)> = (0..miners).map(|i| (name(i), 1.0 / miners as f64, 1)).collect();
    let standings: Vec<(&str, f64, u16)> = standings.iter().map(|(m, w, u)| (m.as_str(), *w, *u)).collect();
    let boards = [leaderboard("ns", "main", &standings, true)];
    let metrics = Metrics::new();
    metrics.set_tournament(&snapshot(&refs(&boards), &refs(&submissions), &refs(&evaluations)));
    metrics
}

#[test]
fn series_do_not_grow_with_tasks_and_miners_are_capped() {
    let thousand = series(&week(1000, 256)).len();
    assert_eq!(thousand, series(&week(100, 256)).len(), "tasks add no series");
    // Per miner: 3 on the leaderboard (4 with a score today), 5 phases, 6 trainer figures, 3
    // losses and a rank; per leaderboard 5; one count per scoring status.
    assert_eq!(thousand, 256 * (3 + 5 + 6 + 3 + 1) + 5 + 1);
    println!("series for a 1,000-task week with 256 miners: {thousand}");
    let crowd = series(&week(1000, 4000)).len();
    assert_eq!(crowd, MAX_MINERS * (3 + 5 + 6 + 3 + 1) + 5 + 1, "miners beyond the cap get no series");
}

#[test]
fn a_1000_task_week_is_under_5000_series_on_the_operators_metrics() {
    // Everything one scrape of the leader's /metrics holds after the week: the tournament's
    // gauges, the histograms and counters created at 0, and the operator's own series once its
    // five controllers have reconciled and the phases have been counted (no reconcile errors).
    let metrics = week(1000, 256);
    for controller in ["task", "submission", "evaluation", "leaderboard", "tasksource"] {
        metrics.reconciles.with_label_values(&[controller]).inc();
        metrics.durations.with_label_values(&[controller]).observe(0.01);
    }
    for phase in Phase::ALL {
        metrics.tasks.with_label_values(&[phase.as_str()]).set(0);
    }
    for phase in crate::api::submission::SubmissionPhase::ALL {
        metrics.submissions.with_label_values(&[phase.as_str()]).set(0);
    }
    metrics.leader.set(1);
    let all = metrics.render().lines().filter(|l| !l.starts_with('#')).count();
    let histograms = (7 + 5 * 2) * (12 + 3); // phases left and kind × result, 12 buckets + +Inf, sum, count
    // Tasks finished by result, ConfigMap pushes by result, the chain sink's decisions by outcome.
    let counters = 2 + 2 + crate::operator::chain_sink::OUTCOMES.len();
    let health = 5 + 5 * (12 + 3) + 9 + 5 + 1; // reconciles and their durations (12 buckets), tasks, submissions, leader
    assert_eq!(all, 4_614 + histograms + counters + health);
    assert!(all < 5_000, "{all} series");
    println!("series on /metrics after a 1,000-task week with 256 miners: {all} (histograms {histograms})");
}

#[test]
fn a_trainer_report_takes_the_time_from_the_job_and_the_figures_from_the_trainer() {
    let s = submission("ns", "t", "m", 30, None);
    let summary = TrainingSummary {
        steps: Some(40),
        tokens: Some(3000),
        wall_seconds: Some(500.0),
        final_train_loss: Some(1.5),
        stopped_by_deadline: Some(false),
    };
    let report = trainer_report(Some(&summary), &s);
    assert_eq!(report.wall_seconds, Some(600.0), "the Job ran 10 minutes");
    assert_eq!(report.gpu_seconds, Some(1200.0), "on 2 GPUs");
    assert_eq!(report.tokens_per_second, Some(6.0), "over the trainer's own wall time");
    assert_eq!((report.steps, report.final_train_loss), (Some(40), Some(1.5)));
    // No summary (a trainer that wrote none): the operator's own measures remain.
    let bare = trainer_report(None, &s);
    assert_eq!((bare.steps, bare.tokens_per_second, bare.gpu_seconds), (None, None, Some(1200.0)));
}

#[test]
fn a_phase_change_and_each_ended_workload_are_observed_once() {
    let mut previous = TaskStatus { phase: Phase::Training, phase_started_at: Some(at(0)), ..TaskStatus::default() };
    let next = TaskStatus { phase: Phase::Evaluating, phase_started_at: Some(at(30)), ..TaskStatus::default() };
    assert_eq!(phase_left(&previous, &next, Some(at(-5)), at(30)), Some((Phase::Training, 1800.0)));
    assert_eq!(phase_left(&next, &next, None, at(40)), None);
    previous.phase_started_at = None;
    assert_eq!(phase_left(&previous, &next, Some(at(-5)), at(30)), Some((Phase::Training, 2100.0)));

    let mut before = TaskState::default();
    let mut alice = Entrant::new("alice", Role::Miner, None);
    alice.training = Work::Active { attempt: 1, requested_at: at(0), started_at: Some(at(1)) };
    let mut bob = alice.clone();
    bob.name = "bob".into();
    before.entrants = vec![alice.clone(), bob.clone()];
    let mut after = before.clone();
    after.entrants[0].training = Work::Succeeded {
        attempt: 1,
        started_at: at(1),
        finished_at: at(11),
        output: WorkOutput::Trained(TrainingSummary::default()),
    };
    after.entrants[1].training =
        Work::Failed { attempt: 1, finished_at: at(3), reason: "crashed".into(), log_tail: String::new() };
    assert_eq!(
        finished_work(&before, &after),
        vec![
            Finished { kind: WorkKind::Train, succeeded: true, seconds: 600.0 },
            Finished { kind: WorkKind::Train, succeeded: false, seconds: 120.0 },
        ]
    );
    assert_eq!(finished_work(&after, &after), vec![], "an ended workload is not counted again");
}

fn refs<T>(objects: &[T]) -> Vec<&T> {
    objects.iter().collect()
}
