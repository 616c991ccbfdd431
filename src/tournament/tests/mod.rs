//! Every phase transition of the lifecycle, including timeouts, retries and delays.
//! `preparing`: Pending → Preparing → Selecting (⇄ Delayed); `competing`: Training → Evaluating
//! → Recording → Succeeded/Failed.

mod competing;
mod halving;
mod preparing;
mod synthesizing;

pub(super) use chrono::{DateTime, Duration, TimeZone, Utc};

pub(super) use super::*;
pub(super) use crate::api::task::{BaseModel, DatasetSpec, Origin, TaskSpec};
pub(super) use crate::mechanism::TaskType;

pub(super) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap()
}

pub(super) fn secs(s: i64) -> DateTime<Utc> {
    t0() + Duration::seconds(s)
}

pub(super) fn spec() -> TaskSpec {
    TaskSpec {
        task_type: TaskType::InstructText,
        base_model: BaseModel { uri: "base".into(), params_b: 0.5 },
        dataset: DatasetSpec {
            uri: "data.jsonl".into(),
            columns: Default::default(),
            synthetic_uri: None,
            generator: None,
        },
        hours: Some(0.01), // 36 s
        deadline: None,
        miners_per_task: None,
        miners: Vec::new(),
        miner_selector: None,
        gpu_class: None,
        origin: Origin::Organic,
        reward_functions: Vec::new(),
        baseline: true,
        evaluate_base: true,
        seed: Some(7),
        halving: None,
    }
}

pub(super) fn config() -> TournamentConfig {
    let mut config = TournamentConfig::default();
    config.lifecycle.deadline_grace_s = 10;
    config.lifecycle.evaluation_timeout_s = 60;
    config.lifecycle.prepare_timeout_s = 30;
    config.lifecycle.pending_timeout_s = None;
    config
}

pub(super) fn pool(names: &[&str]) -> Vec<PoolMiner> {
    names
        .iter()
        .map(|n| PoolMiner { name: n.to_string(), strategy: Some(format!("s-{n}")), average_quality_today: None })
        .collect()
}

pub(super) fn obs(now: DateTime<Utc>) -> Observation {
    let mut obs = Observation::new(now);
    obs.pool = pool(&["alice", "bob"]);
    obs
}

pub(super) fn id(kind: WorkKind, entrant: &str, attempt: u32) -> WorkloadId {
    WorkloadId::new(kind, entrant, attempt)
}

pub(super) fn prepared() -> WorkloadState {
    WorkloadState::Succeeded {
        started_at: secs(0),
        finished_at: secs(1),
        output: WorkOutput::Prepared(DatasetFacts { rows: 100, train: 85, test: 10, synthetic: 5 }),
    }
}

pub(super) fn trained(finished: i64) -> WorkloadState {
    WorkloadState::Succeeded {
        started_at: secs(2),
        finished_at: secs(finished),
        output: WorkOutput::Trained(TrainingSummary {
            steps: Some(10),
            final_train_loss: Some(0.5),
            ..Default::default()
        }),
    }
}

pub(super) fn sealed(digest: &str) -> WorkloadState {
    let summary = SealSummary { digest: digest.into(), files: 2, bytes: 3, training: None };
    WorkloadState::Succeeded { started_at: secs(31), finished_at: secs(32), output: WorkOutput::Sealed(summary) }
}

pub(super) fn evaluated(test: f64, synth: f64) -> WorkloadState {
    let report = EvalReport {
        ok: true,
        test_loss: Some(test),
        synth_loss: Some(synth),
        weights_sha256: Some(format!("{test}-{synth}")),
        ..Default::default()
    };
    WorkloadState::Succeeded { started_at: secs(40), finished_at: secs(45), output: WorkOutput::Evaluated(report) }
}

pub(super) fn failed(reason: &str, retryable: bool) -> WorkloadState {
    WorkloadState::Failed {
        started_at: Some(secs(2)),
        finished_at: secs(5),
        reason: reason.into(),
        log_tail: "Traceback: boom".into(),
        retryable,
    }
}

pub(super) fn step(state: &TaskState, obs: &Observation) -> Decision {
    decide("task-1", &spec(), state, obs, &config())
}

pub(super) fn starts(decision: &Decision) -> Vec<String> {
    decision
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::PrepareDataset { id, .. }
            | Action::StartTraining { id, .. }
            | Action::StartSeal { id, .. }
            | Action::StartEvaluation { id, .. }
            | Action::StopWorkload { id, .. } => {
                Some(format!("{}{id}", if matches!(a, Action::StopWorkload { .. }) { "stop " } else { "" }))
            }
            _ => None,
        })
        .collect()
}

/// The state once training has started for alice, bob, baseline (and the base is evaluating).
pub(super) fn training_state() -> TaskState {
    let mut o = obs(secs(1));
    o.workloads.insert(id(WorkKind::Prepare, "", 1), prepared());
    let d = step(&step(&TaskState::default(), &obs(secs(0))).state, &o);
    assert_eq!(d.state.phase, Phase::Training);
    d.state
}
