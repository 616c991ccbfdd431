//! The hostile-miner suite (issue 10): three Miners run `e2e/images/hostile-miner` (the trainer
//! image plus `attacks.py`) as their trainer, in a tournament beside the honest miners on the
//! real node; a control tournament with the same seed runs without them. Each attacker tries
//! every boundary of its pod and logs `N attacks, 0 escapes`; what only the outside can judge
//! is checked here: what it left on the claim, its daemon, its forged result and its models.
//! The real node enforces NetworkPolicies (kube-router's firewall, e2e/node), so the attackers
//! run with `--network-policy-enforced`: a network path that is merely reachable (the API server
//! answering 401, an open port on another pod) counts as an escape, not only a granted request.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gradients::api::evaluation::{ResultState, SubmissionResult};
use gradients::api::{Evaluation, MinerSubmission, Task};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use crate::support::Cluster;

/// The hostile task: the control's spec with the attackers added to the pool.
pub const TASK: &str = "instruct-hostile";
/// Labels the honest Miners carry too, so the hostile task draws them as the control does.
pub const POOL_LABEL: &str = "with-attackers";
/// Each attacker and what it leaves as its model (`attacks.py` MODE).
pub const ATTACKERS: [(&str, &str); 3] =
    [("hostile-tamper", "tamper"), ("hostile-pickle", "pickle"), ("hostile-refused", "refused")];
/// The attacks the image knows, in its order (`ATTACKS` in attacks.py).
const ATTACKS: [&str; 11] = [
    "heldout-mounts",
    "heldout-dotdot",
    "heldout-proc",
    "heldout-env",
    "write-rivals-and-eval-inputs",
    "cloud-metadata",
    "api-server",
    "kubelet",
    "dns",
    "other-pods",
    "privilege",
];
/// What each attacker forges as its own termination message (and its pickle as the evaluator's).
const FORGED_LOSS: f64 = 0.0001;

pub fn miners_yaml(ns: &str, image: &str) -> String {
    ATTACKERS
        .iter()
        .map(|(name, mode)| {
            format!(
                "apiVersion: gradients.io/v1alpha1\nkind: Miner\nmetadata: {{name: {name}, namespace: {ns}, labels: {{{POOL_LABEL}: \"yes\"}}}}\n\
                 spec: {{image: {image}, command: [python, /opt/hostile/attacks.py, {mode}, --network-policy-enforced], hotkey: 5F{name}}}\n---\n"
            )
        })
        .collect()
}

/// The attackers' logs, trainer pods and outputs; panics on an escape.
pub async fn assert_attackers_contained(cluster: &Cluster, ns: &str, artifacts: &Path) {
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    let submissions: Api<MinerSubmission> = Api::namespaced(cluster.client.clone(), ns);
    let mut outputs: Vec<PathBuf> = Vec::new();
    for (miner, mode) in ATTACKERS {
        let selector = format!("gradients.io/role=trainer,gradients.io/task={TASK},gradients.io/miner={miner}");
        let listed = pods.list(&ListParams::default().labels(&selector)).await.unwrap().items;
        assert_eq!(listed.len(), 1, "{miner}: one trainer pod, never retried");
        let pod = &listed[0];
        let log = cluster.kubectl(&["logs", "-n", ns, &pod.name_any()]);
        eprintln!("--- {miner} ({mode}) ---\n{log}");
        let known = format!("hostile miner ({mode}): {} attacks known: {}", ATTACKS.len(), ATTACKS.join(", "));
        assert!(log.contains(&known), "{miner} knows exactly the attacks of this suite: {log}");
        let verdicts: Vec<&str> = log.lines().filter(|l| l.starts_with("attack ")).collect();
        assert_eq!(verdicts.len(), ATTACKS.len(), "{miner}: one verdict per attack: {log}");
        for (line, name) in verdicts.iter().zip(ATTACKS) {
            assert!(line.starts_with(&format!("attack {name}: ")), "{miner}: {line}");
            assert!(!line.contains(": ESCAPED:"), "{miner} escaped: {line}");
        }
        assert!(log.contains(&format!("\n{} attacks, 0 escapes\n", ATTACKS.len())), "{miner}: {log}");

        // Its daemon (SIGTERM ignored, own session) died with the container.
        let ended = pod_finished_at(cluster, ns, &pod.name_any());
        let submission = submissions
            .list(&ListParams::default().labels(&format!("gradients.io/task={TASK},gradients.io/miner={miner}")))
            .await
            .unwrap()
            .items;
        assert_eq!(submission.len(), 1, "{miner}: one submission");
        let output = on_claim(artifacts, &submission[0].spec.artifact_uri);
        let beats = heartbeats(&output.join("HOSTILE-alive"));
        assert!(!beats.is_empty(), "{miner}: its daemon started ({})", output.display());
        let last = beats.iter().max().copied().unwrap_or_default();
        // finishedAt has whole seconds.
        assert!(last < ended + 1000, "{miner}: a daemon wrote at {last} ms, after its container ended at {ended} ms");
        outputs.push(output);
    }

    // Nothing an attacker created is anywhere on the claim but in its own output.
    let strays: Vec<PathBuf> = walk(artifacts)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("HOSTILE-")))
        .filter(|p| !outputs.iter().any(|o| p.starts_with(o)))
        .collect();
    assert!(strays.is_empty(), "files the attackers planted outside their outputs: {strays:?}");
}

/// The attackers' models were scored safely and never retried, and the honest miners scored
/// exactly what they scored in the control tournament.
pub async fn assert_scores(cluster: &Cluster, ns: &str, control: &Evaluation, hostile: &Evaluation) {
    let results = |e: &Evaluation| -> BTreeMap<String, SubmissionResult> {
        e.status.clone().unwrap().results.into_iter().map(|r| (r.miner.clone(), r)).collect()
    };
    let (control, attacked) = (results(control), results(hostile));
    let task = Api::<Task>::namespaced(cluster.client.clone(), ns).get(TASK).await.unwrap();
    let base = crate::base_model_loss(&task);
    let jobs: Api<Job> = Api::namespaced(cluster.client.clone(), ns);
    for (miner, mode) in ATTACKERS {
        let result = &attacked[miner];
        assert_ne!(result.test_loss, Some(FORGED_LOSS), "{miner}: its forged result was taken: {result:?}");
        let failure = result.failure.clone().unwrap_or_default();
        match mode {
            "tamper" => {
                assert_eq!(result.state, ResultState::Evaluated, "{miner}: {result:?}");
                let loss = result.test_loss.unwrap();
                // The base's weights with one element nudged: with its own configs it would score
                // far from the base (5.56 against 3.61 on this dataset, measured); with the base's,
                // the same to a part in a thousand.
                assert!((loss - base).abs() <= 1e-3 * base.abs(), "{miner}: {loss}, the base model scores {base}");
            }
            "pickle" => {
                assert_eq!(result.state, ResultState::Failed, "{miner}: {result:?}");
                assert!(failure.contains("pytorch_model.bin") || failure.contains("pickle"), "{miner}: {failure}");
            }
            _ => {
                assert_eq!(result.state, ResultState::Failed, "{miner}: {result:?}");
                assert!(failure.contains("seal") && failure.contains("larger"), "{miner}: {failure}");
            }
        }
        // Bounded time, no retry: one Job per step it reached.
        let selector = format!("gradients.io/task={TASK},gradients.io/miner={miner}");
        let roles: Vec<String> = jobs
            .list(&ListParams::default().labels(&selector))
            .await
            .unwrap()
            .items
            .iter()
            .map(|j| j.labels().get("gradients.io/role").cloned().unwrap_or_default())
            .collect();
        let expected: &[&str] = if mode == "refused" { &["seal"] } else { &["seal", "evaluator"] };
        for role in expected {
            assert_eq!(roles.iter().filter(|r| r == role).count(), 1, "{miner}: one {role} Job: {roles:?}");
        }
    }
    // A training that ends after its planned epochs is deterministic for the seed; one cut
    // short by its deadline depends on how busy the machine was (as in tests/run_e2e.rs).
    let submissions: Api<MinerSubmission> = Api::namespaced(cluster.client.clone(), ns);
    let deadline_bound: Vec<(String, String)> = submissions
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|s| {
            s.status.as_ref().and_then(|s| s.training.as_ref()).and_then(|t| t.stopped_by_deadline) != Some(false)
        })
        .map(|s| (s.spec.task.clone(), s.spec.miner.clone()))
        .collect();
    let mut compared = 0;
    for (miner, reference) in &control {
        let theirs = &attacked[miner];
        assert_eq!(theirs.state, reference.state, "{miner}");
        if deadline_bound.iter().any(|(_, m)| m == miner) {
            eprintln!("{miner}: stopped by its deadline in one run ({deadline_bound:?}), not compared");
            continue;
        }
        for (what, a, b) in
            [("test", reference.test_loss, theirs.test_loss), ("synth", reference.synth_loss, theirs.synth_loss)]
        {
            let (a, b) = (a.unwrap(), b.unwrap());
            assert!(
                (a - b).abs() <= 1e-6 * a.abs().max(1.0),
                "{miner}: {what} loss {a} in the control, {b} beside the attackers"
            );
        }
        compared += 1;
    }
    assert!(compared >= 2, "too few honest trainings ended by their epochs to compare: {control:?}");
    eprintln!("honest miners compared with the control: {compared} of {}", control.len());
}

/// The node path of a claim location (`/artifacts/...`).
fn on_claim(artifacts: &Path, uri: &str) -> PathBuf {
    artifacts.join(uri.strip_prefix("/artifacts/").unwrap_or_else(|| panic!("not on the claim: {uri}")))
}

fn heartbeats(dir: &Path) -> Vec<i64> {
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

/// The container's end, in Unix milliseconds.
fn pod_finished_at(cluster: &Cluster, ns: &str, pod: &str) -> i64 {
    let at = cluster.kubectl(&[
        "get",
        "pod",
        "-n",
        ns,
        pod,
        "-o",
        "jsonpath={.status.containerStatuses[0].state.terminated.finishedAt}",
    ]);
    chrono::DateTime::parse_from_rfc3339(at.trim())
        .unwrap_or_else(|e| panic!("{pod}: finishedAt {at:?}: {e}"))
        .timestamp_millis()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path.clone());
            }
            found.push(path);
        }
    }
    found
}
