use chrono::{DateTime, Utc};

use super::*;
use crate::api::task::TaskPhase;

fn at(minute: i64) -> DateTime<Utc> {
    "2026-11-26T12:00:00Z".parse::<DateTime<Utc>>().unwrap() + chrono::Duration::minutes(minute)
}

const TEN_MINUTES: Duration = Duration::from_secs(600);

/// A Task that ended at minute 0 with a prepare Job, an evaluation Job and a MinerSubmission.
fn ended(phase: TaskPhase) -> TaskStatus {
    let children = [
        ("Job/t1-prepare-0", "u-prepare"),
        ("Job/t1-evaluate-m1-0", "u-eval"),
        ("MinerSubmission/t1-m1-0", "u-sub"),
        ("Evaluation/t1", "u-record"),
    ];
    TaskStatus {
        phase,
        phase_started_at: Some(at(0)),
        children: children.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..TaskStatus::default()
    }
}

fn submission(job: Option<(&str, &str)>) -> MinerSubmission {
    let status = match job {
        Some((name, uid)) => serde_json::json!({"phase": "Succeeded", "job": name, "jobUid": uid}),
        None => serde_json::json!({"phase": "Failed"}),
    };
    serde_json::from_value(serde_json::json!({
        "apiVersion": "gradients.io/v1alpha1", "kind": "MinerSubmission",
        "metadata": {"name": "t1-m1-0", "namespace": "ns"},
        "spec": {"task": "t1", "miner": "m1", "taskType": "InstructText", "baseModelUri": "/m",
                 "baseModelParamsB": 0.5, "dataUri": "/d", "artifactUri": "/a", "hours": 1.0,
                 "gpus": 1, "gpuClass": "h100", "seed": 1},
        "status": status,
    }))
    .unwrap()
}

fn job(name: &str, uid: &str) -> Recorded {
    Recorded { name: name.into(), uid: uid.into() }
}

#[test]
fn a_running_task_keeps_its_jobs() {
    let running = TaskStatus { phase: TaskPhase::Training, ..ended(TaskPhase::Training) };
    assert_eq!(finished_jobs(&running, &running, &[], TEN_MINUTES, at(60)), FinishedJobs::InUse);
}

#[test]
fn an_ended_task_keeps_its_jobs_for_the_retention_then_names_every_recorded_job() {
    let status = ended(TaskPhase::Succeeded);
    let submissions = [submission(Some(("t1-m1-0", "u-trainer"))), submission(None)];
    assert_eq!(finished_jobs(&status, &status, &submissions, TEN_MINUTES, at(9)), FinishedJobs::KeepUntil(at(10)));
    // The Task's own Jobs by their recorded uids, and the trainer Job its submission recorded;
    // never the MinerSubmission or the Evaluation (the records), nor a submission without a Job.
    let expected =
        vec![job("t1-evaluate-m1-0", "u-eval"), job("t1-m1-0", "u-trainer"), job("t1-prepare-0", "u-prepare")];
    assert_eq!(finished_jobs(&status, &status, &submissions, TEN_MINUTES, at(10)), FinishedJobs::Remove(expected));
}

#[test]
fn a_failed_task_is_cleaned_up_too_and_zero_retention_removes_at_once() {
    let status = ended(TaskPhase::Failed);
    assert!(
        matches!(finished_jobs(&status, &status, &[], Duration::ZERO, at(0)), FinishedJobs::Remove(jobs) if jobs.len() == 2)
    );
}

#[test]
fn once_removed_the_condition_stays_and_nothing_is_deleted_again() {
    let previous = ended(TaskPhase::Succeeded);
    let conditions = condition(&previous, true, Some(3), at(10));
    assert_eq!(conditions.len(), 1);
    assert_eq!((conditions[0].type_.as_str(), conditions[0].status.as_str()), (JOBS_REMOVED, "True"));
    let after = TaskStatus { conditions: conditions.clone(), ..previous.clone() };
    assert_eq!(finished_jobs(&after, &after, &[], TEN_MINUTES, at(20)), FinishedJobs::Removed);
    // Kept by the next reconcile, with its transition time.
    assert_eq!(condition(&after, false, Some(3), at(20)), conditions);
    assert!(condition(&previous, false, Some(3), at(20)).is_empty());
}

/// The Task's recorded submission `t1-m1-0` (uid `u-sub`), or one under its name with `uid`.
fn cached_submission(name: &str, uid: &str) -> MinerSubmission {
    let mut submission = submission(None);
    submission.metadata.name = Some(name.into());
    submission.metadata.uid = Some(uid.into());
    submission
}

#[test]
fn an_ended_tasks_own_submissions_are_archived_only_once_its_jobs_are_gone() {
    let cached = [
        cached_submission("t1-m1-0", "u-sub"),
        // Not the Task's: a stranger's object under a recorded name, and one it never recorded.
        cached_submission("t1-m1-0", "u-impostor"),
        cached_submission("t1-m2-0", "u-other"),
    ];
    let ended = ended(TaskPhase::Succeeded);
    assert!(to_archive(&ended, &cached).is_empty(), "retention still reads them to find the trainer Jobs");
    let removed = TaskStatus { conditions: condition(&ended, true, Some(1), at(10)), ..ended.clone() };
    assert_eq!(to_archive(&removed, &cached), vec![job("t1-m1-0", "u-sub")]);
    let running = TaskStatus { phase: TaskPhase::Training, ..removed };
    assert!(to_archive(&running, &cached).is_empty(), "a Task in flight reads its submissions");
}
