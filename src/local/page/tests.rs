use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::model::{MAX_CURVE_POINTS, RunContents, extract, history};
use super::render::html;
use crate::local::report::{Row, RunReport, Weight};
use crate::mechanism::records::{SubmissionRecord, TaskRecord};
use crate::mechanism::{MechanismConfig, TaskType};
use crate::tournament::{Entrant, Phase, Role, TaskState, TrainingSummary, Work, WorkOutput};

fn at(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap() + Duration::minutes(minute)
}

fn row(entrant: &str, role: Role, losses: Option<(f64, f64)>, status: &str) -> Row {
    Row {
        entrant: entrant.into(),
        role,
        strategy: Some("lora-fast".into()),
        test_loss: losses.map(|l| l.0),
        synth_loss: losses.map(|l| l.1),
        text_guided_loss: None,
        no_text_loss: None,
        weighted_loss: losses.map(|l| 0.3 * l.0 + 0.7 * l.1),
        train_loss: None,
        stopped_by_deadline: None,
        status: status.into(),
        reason: None,
        rank: None,
        score: None,
        rung: None,
        eliminated_after: None,
    }
}

fn progress(step: u64, loss: f64, elapsed: f64) -> String {
    format!("{{\"event\":\"progress\",\"step\":{step},\"total_steps\":10,\"loss\":{loss},\"elapsed_s\":{elapsed}}}\n")
}

/// A finished run: alice trained (3 progress lines), bob failed after one, the baseline
/// trained, the base model is evaluated only.
fn contents() -> RunContents {
    let mut alice = Entrant::new("alice", Role::Miner, Some("lora-fast".into()));
    alice.training = Work::Succeeded {
        attempt: 1,
        started_at: at(0),
        finished_at: at(1),
        output: WorkOutput::Trained(TrainingSummary { stopped_by_deadline: Some(true), ..Default::default() }),
    };
    let mut bob = Entrant::new("bob", Role::Miner, Some("full-ft".into()));
    bob.training = Work::Failed { attempt: 1, finished_at: at(2), reason: "x".into(), log_tail: String::new() };
    let mut baseline = Entrant::new("baseline", Role::Baseline, Some("baseline".into()));
    baseline.training = alice.training.clone();
    let base = Entrant::new("base-model", Role::BaseModel, None);
    let state = TaskState {
        phase: Phase::Succeeded,
        hours: Some(0.02),
        entrants: vec![alice, bob, baseline, base],
        ..Default::default()
    };
    let mut failed = row("bob", Role::Miner, None, "failed");
    failed.reason = Some("trainer exited with code 1 <script>alert(1)</script>\nsecond line".into());
    let report = RunReport {
        task: "t".into(),
        task_type: "InstructText".into(),
        phase: Phase::Succeeded,
        message: None,
        hours: Some(0.02),
        run_dir: "/data/runs/t".into(),
        rows: vec![
            row("alice", Role::Miner, Some((2.0, 2.5)), "ranked"),
            failed,
            row("baseline", Role::Baseline, Some((2.2, 2.3)), "reference"),
            row("base-model", Role::BaseModel, Some((3.0, 3.1)), "reference"),
        ],
        winner: Some("alice".into()),
        winner_beats_baseline_pct: Some(4.0),
        winner_beats_base_model_pct: Some(30.0),
        weights: vec![
            Weight { miner: "alice".into(), weight: 1.0, weight_u16: 65535 },
            Weight { miner: "bob".into(), weight: 0.0, weight_u16: 0 },
        ],
        gpus: vec![],
    };
    let train_logs = BTreeMap::from([
        // Out of order, with noise and other events between the progress lines.
        ("alice".to_string(), progress(2, 1.5, 20.0) + "noise\n" + &progress(1, 2.5, 10.0) + &progress(3, 1.2, 30.0)),
        ("bob".to_string(), progress(1, 3.0, 12.5) + "{\"event\":\"done\"}\nTraceback\n"),
        ("baseline".to_string(), progress(1, 2.0, 5.0)),
    ]);
    let train_spans = BTreeMap::from([("alice".to_string(), (at(0), at(1)))]);
    RunContents { report, state, train_logs, train_spans, store: vec![record("t", 0, &[("alice", 2.0), ("bob", 9.0)])] }
}

fn record(id: &str, minute: i64, losses: &[(&str, f64)]) -> TaskRecord {
    TaskRecord {
        id: id.into(),
        task_type: TaskType::InstructText,
        model_params_b: 1.0,
        hours: 1.0,
        finished_at: at(minute),
        submissions: losses
            .iter()
            .map(|(miner, loss)| SubmissionRecord {
                miner: miner.to_string(),
                submitted_at: at(minute - 30),
                test_loss: Some(*loss),
                synth_loss: Some(*loss),
                text_guided_loss: None,
                no_text_loss: None,
                weights_sha256: Some(format!("{miner}-{id}")),
                rung: None,
            })
            .collect(),
    }
}

#[test]
fn curves_come_from_each_trained_entrants_progress_lines_in_step_order() {
    let page = extract(&contents(), &MechanismConfig::default());
    let names: Vec<&str> = page.curves.iter().map(|c| c.entrant.as_str()).collect();
    assert_eq!(names, ["alice", "bob", "baseline"], "every entrant that trains, none for the base model");
    assert_eq!(page.curves[0].points, vec![(1.0, 2.5), (2.0, 1.5), (3.0, 1.2)]);
    assert_eq!(page.curves[0].total_steps, Some(10));
    assert_eq!(page.curves[1].points, vec![(1.0, 3.0)], "a failed training shows what it logged");
}

#[test]
fn a_long_curve_is_thinned_keeping_its_ends() {
    let mut contents = contents();
    let log: String = (1..=5000).map(|s| progress(s, 10.0 / s as f64, s as f64)).collect();
    contents.train_logs.insert("alice".into(), log);
    let page = extract(&contents, &MechanismConfig::default());
    let points = &page.curves[0].points;
    assert_eq!(points.len(), MAX_CURVE_POINTS);
    assert_eq!(points.first(), Some(&(1.0, 10.0)));
    assert_eq!(points.last(), Some(&(5000.0, 0.002)));
}

#[test]
fn the_time_budget_uses_the_attempts_span_and_a_failed_ones_last_progress() {
    let page = extract(&contents(), &MechanismConfig::default());
    let used: Vec<(&str, Option<f64>, &str)> =
        page.budgets.iter().map(|b| (b.entrant.as_str(), b.used_s, b.outcome.as_str())).collect();
    assert_eq!(
        used,
        [("alice", Some(60.0), "trained"), ("bob", Some(12.5), "failed"), ("baseline", Some(5.0), "trained")]
    );
    assert!(page.budgets.iter().all(|b| b.budget_s == Some(72.0)), "0.02 h");
    assert_eq!(page.budgets[0].stopped_by_deadline, Some(true));
}

#[test]
fn the_loss_plot_has_every_entrant_with_both_losses() {
    let page = extract(&contents(), &MechanismConfig::default());
    let points: Vec<(&str, f64, f64)> = page.losses.iter().map(|p| (p.entrant.as_str(), p.x, p.y)).collect();
    assert_eq!(points, [("alice", 2.0, 2.5), ("baseline", 2.2, 2.3), ("base-model", 3.0, 3.1)]);
}

#[test]
fn the_store_history_has_the_standings_after_each_task() {
    let store = vec![
        record("t3", 120, &[("carol", 1.0), ("alice", 5.0)]),
        record("t1", 0, &[("alice", 1.0), ("bob", 2.0)]),
        record("t2", 60, &[("bob", 1.0), ("alice", 2.0)]),
    ];
    let h = history(&MechanismConfig::default(), &store);
    let tasks: Vec<&str> = h.snapshots.iter().map(|s| s.task.as_str()).collect();
    assert_eq!(tasks, ["t1", "t2", "t3"], "in time order");
    assert_eq!(h.snapshots[0].weights.len(), 2, "carol is not on the board before her task");
    assert_eq!(h.snapshots[2].weights.len(), 3);
    for s in &h.snapshots {
        let total: f64 = s.weights.iter().map(|w| w.1).sum();
        assert!((total - 1.0).abs() < 1e-9, "{s:?}");
    }
    let first = |s: &super::model::Snapshot| s.weights.iter().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap().0.clone();
    assert_eq!(first(&h.snapshots[0]), "alice");
    let mut latest = h.snapshots[2].weights.clone();
    latest.sort_by(|a, b| a.0.cmp(&b.0));
    let mut standings: Vec<(String, f64)> = h.standings.iter().map(|m| (m.miner.clone(), m.weight)).collect();
    standings.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(standings, latest, "the standings are the latest snapshot's");
    assert!(h.standings.windows(2).all(|w| w[0].weight >= w[1].weight), "by weight");
}

#[test]
fn the_page_is_self_contained_and_has_a_plot_per_trained_entrant_and_a_row_per_entrant() {
    let page = html(&extract(&contents(), &MechanismConfig::default()));
    assert_eq!(page.matches("<figure class=\"loss-curve\"").count(), 3);
    assert_eq!(page.matches("<tr class=\"entrant").count(), 4);
    assert_eq!(page.matches("<tr class=\"weight\"").count(), 2);
    assert_eq!(page.matches("<tr class=\"standing\"").count(), 2);
    for id in ["test-vs-synth", "time-budget", "weights-over-time"] {
        let figure = &page[page.find(&format!("<figure id=\"{id}\">")).expect(id)..];
        assert!(figure[..figure.find("</figure>").unwrap()].contains("<svg"), "{id} is drawn");
    }
    // Nothing is fetched: no script, stylesheet, image or font from anywhere.
    for needle in ["<script", "<link", "<img", "src=", "href=", "url(", "@import"] {
        assert!(!page.contains(needle), "{needle} in the page");
    }
}

#[test]
fn text_from_the_run_is_escaped() {
    let page = html(&extract(&contents(), &MechanismConfig::default()));
    assert!(page.contains("trainer exited with code 1 &lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!page.contains("second line"), "one line of a reason");
}
