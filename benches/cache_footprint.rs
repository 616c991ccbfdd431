//! What the operator's caches hold per object (issue 13: its memory at 1,000 Tasks). Each kind is
//! read from the JSON an API server sends for it (managed fields, defaults and status included:
//! an evaluation Job of `tests/fixtures/workloads/`, its completed pod, a sealed MinerSubmission,
//! a Task's recorded Evaluation of 16 miners),
//! kept as the operator's watch keeps it (`caches::Kept`) and stored in a kube-runtime store. It
//! prints the bytes still allocated per object once the JSON is gone: requested sizes, counted by
//! this binary's allocator (the allocator's own rounding comes on top).
//!
//! `cargo bench --bench cache_footprint`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use gradients::api::{Evaluation, MinerSubmission};
use gradients::operator::caches::Kept;
use gradients::operator::condense::{CachedJob, CachedPod};
use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::core::DeserializeGuard;
use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static BLOCKS: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only the sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        BLOCKS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        BLOCKS.fetch_sub(1, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const OBJECTS: usize = 10_000;
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/workloads");

fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{name}")).expect("fixture");
    serde_norway::from_str(&text).expect("fixture YAML")
}

fn uid(i: usize) -> String {
    format!("{i:08x}-1c2a-4000-8000-{i:012x}")
}

/// Who wrote what, as the API server records it: a few entries of nested `f:` maps.
fn managed_fields(entries: &[(&str, &str, Value)]) -> Value {
    entries
        .iter()
        .map(|(manager, subresource, fields)| {
            let mut entry = json!({"manager": manager, "operation": "Update", "apiVersion": "v1",
                "time": "2026-12-03T22:01:07Z", "fieldsType": "FieldsV1", "fieldsV1": fields});
            if !subresource.is_empty() {
                entry["subresource"] = json!(subresource);
            }
            entry
        })
        .collect()
}

/// The evaluation Job as the API server returns it once the Job controller has completed it.
fn evaluation_job(i: usize) -> Value {
    let mut job = fixture("evaluation-job.yaml");
    let name = format!("b{i}-evaluate-m7-1-3113f5b7");
    let meta = &mut job["metadata"];
    meta["name"] = json!(name);
    meta["uid"] = json!(uid(i));
    meta["resourceVersion"] = json!((4_000_000 + i).to_string());
    meta["generation"] = json!(2);
    meta["creationTimestamp"] = json!("2026-12-03T22:01:07Z");
    meta["labels"]["gradients.io/task"] = json!(format!("b{i}"));
    meta["annotations"] = json!({
        "gradients.io/creation-token": format!("{:064x}", i),
        "batch.kubernetes.io/job-tracking": "",
    });
    meta["managedFields"] = managed_fields(&[
        (
            "gradients",
            "",
            json!({"f:metadata": {"f:labels": {"f:gradients.io/task": {}, "f:gradients.io/role": {}}},
            "f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"evaluator\"}": {"f:args": {}, "f:image": {}}}}}}}),
        ),
        (
            "kube-controller-manager",
            "status",
            json!({"f:status": {"f:conditions": {}, "f:startTime": {},
            "f:completionTime": {}, "f:succeeded": {}, "f:ready": {}, "f:terminating": {}, "f:uncountedTerminatedPods": {}}}),
        ),
        ("kueue", "", json!({"f:spec": {"f:suspend": {}}})),
    ]);
    job["spec"]["suspend"] = json!(false);
    job["spec"]["completions"] = json!(1);
    job["spec"]["parallelism"] = json!(1);
    job["spec"]["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid(i)}});
    job["spec"]["template"]["metadata"]["labels"]["batch.kubernetes.io/controller-uid"] = json!(uid(i));
    job["spec"]["template"]["metadata"]["labels"]["batch.kubernetes.io/job-name"] = json!(name);
    job["status"] = json!({
        "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached",
             "message": "Reached expected number of succeeded pods",
             "lastProbeTime": "2026-12-03T22:09:41Z", "lastTransitionTime": "2026-12-03T22:09:41Z"},
            {"type": "Complete", "status": "True", "reason": "CompletionsReached",
             "message": "Reached expected number of succeeded pods",
             "lastProbeTime": "2026-12-03T22:09:41Z", "lastTransitionTime": "2026-12-03T22:09:41Z"}],
        "startTime": "2026-12-03T22:02:10Z", "completionTime": "2026-12-03T22:09:41Z",
        "succeeded": 1, "ready": 0, "terminating": 0, "uncountedTerminatedPods": {},
    });
    job
}

/// The Job's pod as the API server returns it once it has completed with its result.
fn evaluation_pod(i: usize) -> Value {
    let job = evaluation_job(i);
    let job_name = job["metadata"]["name"].as_str().unwrap().to_string();
    let mut spec = job["spec"]["template"]["spec"].clone();
    spec["nodeName"] = json!(format!("gpu-node-{}", i % 500));
    spec["schedulerName"] = json!("default-scheduler");
    spec["dnsPolicy"] = json!("ClusterFirst");
    spec["terminationGracePeriodSeconds"] = json!(30);
    spec["enableServiceLinks"] = json!(true);
    spec["preemptionPolicy"] = json!("PreemptLowerPriority");
    spec["priority"] = json!(0);
    spec["tolerations"] = json!([
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]);
    let containers = spec["containers"].as_array().unwrap().clone();
    let status_of = |container: &Value, message: Option<&str>| {
        let mut terminated = json!({"exitCode": 0, "reason": "Completed", "startedAt": "2026-12-03T22:02:12Z",
            "finishedAt": "2026-12-03T22:09:40Z", "containerID": format!("containerd://{:064x}", i)});
        if let Some(message) = message {
            terminated["message"] = json!(message);
        }
        json!({"name": container["name"], "image": container["image"], "imageID": "", "ready": false,
            "started": false, "restartCount": 0, "state": {"terminated": terminated}, "lastState": {}})
    };
    let result = r#"{"ok":true,"test_loss":1.0,"synth_loss":1.1,"text_guided_loss":0.5,"no_text_loss":0.6,"weights_sha256":"ab","checks":[],"failure":null}"#;
    let condition = |kind: &str, status: &str| json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": "2026-12-03T22:09:41Z"});
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("{job_name}-x7k2p"), "generateName": format!("{job_name}-"),
            "namespace": job["metadata"]["namespace"], "uid": uid(OBJECTS + i),
            "resourceVersion": (5_000_000 + i).to_string(), "creationTimestamp": "2026-12-03T22:02:10Z",
            "labels": job["spec"]["template"]["metadata"]["labels"].clone(),
            "annotations": {"batch.kubernetes.io/job-completion-index": "0"},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job_name, "uid": uid(i),
                "controller": true, "blockOwnerDeletion": true}],
            "managedFields": managed_fields(&[
                ("kube-controller-manager", "", json!({"f:metadata": {"f:generateName": {}, "f:labels": {},
                    "f:ownerReferences": {}}, "f:spec": {"f:containers": {}, "f:volumes": {}}})),
                ("kwok", "status", json!({"f:status": {"f:conditions": {}, "f:containerStatuses": {},
                    "f:hostIP": {}, "f:phase": {}, "f:podIP": {}, "f:startTime": {}}})),
            ]),
        },
        "spec": spec,
        "status": {
            "phase": "Succeeded", "hostIP": "10.0.1.7", "hostIPs": [{"ip": "10.0.1.7"}],
            "podIP": "10.244.3.9", "podIPs": [{"ip": "10.244.3.9"}], "qosClass": "Burstable",
            "startTime": "2026-12-03T22:02:10Z",
            "conditions": [condition("PodReadyToStartContainers", "False"), condition("Initialized", "True"),
                condition("Ready", "False"), condition("ContainersReady", "False"), condition("PodScheduled", "True")],
            "containerStatuses": containers.iter().map(|c| status_of(c, Some(result))).collect::<Vec<_>>(),
        },
    })
}

/// A MinerSubmission whose model has been trained and sealed.
fn sealed_submission(i: usize) -> Value {
    let mut submission = fixture("submission.yaml");
    let meta = &mut submission["metadata"];
    meta["name"] = json!(format!("b{i}-m7"));
    meta["uid"] = json!(uid(2 * OBJECTS + i));
    meta["resourceVersion"] = json!((6_000_000 + i).to_string());
    meta["creationTimestamp"] = json!("2026-12-03T22:00:31Z");
    meta["labels"] = json!({"gradients.io/task": format!("b{i}"), "gradients.io/miner": "m7"});
    meta["ownerReferences"] = json!([{"apiVersion": "gradients.io/v1alpha1", "kind": "Task",
        "name": format!("b{i}"), "uid": uid(3 * OBJECTS + i), "controller": true, "blockOwnerDeletion": true}]);
    meta["managedFields"] = managed_fields(&[
        ("gradients", "", json!({"f:spec": {"f:task": {}, "f:miner": {}, "f:hours": {}, "f:gpus": {}}})),
        ("gradients", "status", json!({"f:status": {"f:phase": {}, "f:conditions": {}, "f:jobUid": {}}})),
    ]);
    submission["status"] = json!({
        "phase": "Succeeded", "observedGeneration": 1,
        "conditions": [{"type": "Trained", "status": "True", "reason": "Completed",
            "message": "the trainer Job completed", "lastTransitionTime": "2026-12-03T22:05:02Z", "observedGeneration": 1}],
        "job": format!("b{i}-train-m7-1-8c1d2e3f"), "jobUid": uid(4 * OBJECTS + i),
        "startedAt": "2026-12-03T22:01:02Z", "finishedAt": "2026-12-03T22:05:02Z",
        "sealedDigest": format!("sha256:{:064x}", i),
        "sealedUri": format!("/artifacts/tournaments/e2e-bench/b{i}/sealed/train-m7-1"),
        "training": {"steps": 120, "tokens": 480_000, "tokensPerSecond": 2000.0, "finalTrainLoss": 1.2,
            "stoppedByDeadline": false, "wallSeconds": 240.0, "gpuSeconds": 240.0},
    });
    submission
}

/// The Evaluation a Task records when it ends: one per Task, a result for each of its 16 miners.
fn recorded_evaluation(i: usize) -> Value {
    let task = format!("b{i}");
    let miners = (0..16).map(|m| format!("m{m}")).collect::<Vec<_>>();
    let submissions = miners.iter().map(|miner| {
        json!({"miner": miner, "submission": format!("{task}-{miner}"),
        "artifactUri": format!("/artifacts/tournaments/e2e-bench/{task}/models/train-{miner}-1"),
        "submittedAt": "2026-12-03T22:05:02Z"})
    });
    let results = miners.iter().enumerate().map(|(rank, miner)| {
        json!({"miner": miner, "state": "Evaluated",
        "testLoss": 1.0 + rank as f64 / 100.0, "synthLoss": 1.1, "weightsSha256": format!("{:064x}", rank),
        "modelDigest": format!("sha256:{:064x}", rank), "status": "ranked", "weightedLoss": 1.05,
        "rank": rank + 1, "score": 3.0, "adjustedScore": 3.0})
    });
    json!({
        "apiVersion": "gradients.io/v1alpha1", "kind": "Evaluation",
        "metadata": {"name": task, "namespace": "e2e-bench", "uid": uid(5 * OBJECTS + i),
            "resourceVersion": (7_000_000 + i).to_string(), "generation": 1,
            "creationTimestamp": "2026-12-03T22:10:00Z",
            "labels": {"app.kubernetes.io/managed-by": "gradients", "gradients.io/task": task},
            "ownerReferences": [{"apiVersion": "gradients.io/v1alpha1", "kind": "Task", "name": task,
                "uid": uid(3 * OBJECTS + i), "controller": true, "blockOwnerDeletion": true}],
            "managedFields": managed_fields(&[
                ("gradients", "", json!({"f:spec": {"f:task": {}, "f:submissions": {}}})),
                ("gradients", "status", json!({"f:status": {"f:phase": {}, "f:results": {}}})),
            ])},
        "spec": {"task": task, "taskType": "Dpo", "origin": "Organic",
            "baseModelUri": "/artifacts/base-models/qwen2.5-0.5b", "baseModelParamsB": 0.5, "hours": 1.0,
            "dataUri": format!("/artifacts/tournaments/e2e-bench/{task}/data"), "gpuClass": "nvidia-h100",
            "submissions": submissions.collect::<Vec<_>>()},
        "status": {"phase": "Complete", "observedGeneration": 1,
            "conditions": [{"type": "Evaluated", "status": "True", "reason": "Scored", "message": "",
                "lastTransitionTime": "2026-12-03T22:10:00Z", "observedGeneration": 1}],
            "results": results.collect::<Vec<_>>(), "evaluated": 16, "ranked": 16, "winner": "m0",
            "taskWeight": 0.5, "finishedAt": "2026-12-03T22:10:00Z"},
    })
}

/// What one object costs once `OBJECTS` of them were read from their JSON, kept and stored.
struct Footprint {
    json: usize,
    kept: f64,
    blocks: f64,
}

/// The JSON bytes, and the bytes and blocks allocated per object after `OBJECTS` of them were
/// read from their JSON, kept and stored.
fn per_object<K>(make: impl Fn(usize) -> Value) -> Footprint
where
    K: Kept<DynamicType = ()> + Clone + DeserializeOwned + 'static,
{
    let wire: Vec<Vec<u8>> = (0..OBJECTS).map(|i| serde_json::to_vec(&make(i)).expect("JSON")).collect();
    let json_bytes = wire.iter().map(Vec::len).sum::<usize>() / OBJECTS;
    let (reader, mut writer) = reflector::store::<K>();
    let (before, blocks_before) = (LIVE.load(Ordering::Relaxed), BLOCKS.load(Ordering::Relaxed));
    for bytes in &wire {
        let mut object: K = serde_json::from_slice(bytes).expect("an object of the kind");
        object.condense();
        writer.apply_watcher_event(&Event::Apply(object));
    }
    let (after, blocks_after) = (LIVE.load(Ordering::Relaxed), BLOCKS.load(Ordering::Relaxed));
    assert_eq!(reader.state().len(), OBJECTS, "every object is stored under its own name");
    let kept = reader.state()[0].clone();
    assert!(kept.managed_fields().is_empty(), "{} kept who wrote which field", K::kind(&()));
    drop(wire);
    let per = |count: isize| count as f64 / OBJECTS as f64;
    Footprint { json: json_bytes, kept: per(after - before), blocks: per(blocks_after - blocks_before) }
}

fn main() {
    // A cached Job must still say what the Task reads of it.
    let job: CachedJob = serde_json::from_value(evaluation_job(0)).unwrap();
    let back: Job = job.to_job();
    assert!(back.status.and_then(|s| s.completion_time).is_some(), "the completion is kept");
    // A guarded kind that fails to read is stored as its error: the figures would be of nothing.
    let submission: DeserializeGuard<MinerSubmission> = serde_json::from_value(sealed_submission(0)).unwrap();
    submission.0.expect("the MinerSubmission reads as one");
    let evaluation: DeserializeGuard<Evaluation> = serde_json::from_value(recorded_evaluation(0)).unwrap();
    evaluation.0.expect("the Evaluation reads as one");
    let figures = [
        ("evaluation Job", per_object::<CachedJob>(evaluation_job)),
        ("its pod", per_object::<CachedPod>(evaluation_pod)),
        ("MinerSubmission", per_object::<DeserializeGuard<MinerSubmission>>(sealed_submission)),
        ("Evaluation", per_object::<DeserializeGuard<Evaluation>>(recorded_evaluation)),
    ];
    println!("cache footprint over {OBJECTS} objects of each kind, per object:");
    for (kind, Footprint { json, kept, blocks }) in figures {
        println!("  {kind:<16} JSON {json:>6} B  kept in the store {kept:>6.0} B in {blocks:>4.0} allocations");
    }
}
