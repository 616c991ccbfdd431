//! The Leaderboard's chain sink against the chain double (`src/bin/chain-double`, a stand-in
//! subtensor node, run as a real process): the operator runs as the chart's ServiceAccount, so
//! the chart's Secret RBAC is what is tested. A change of weights is exactly one accepted
//! extrinsic; a restarted operator inside the rate-limit window sends nothing; a missing,
//! malformed or forbidden key Secret is a condition naming it and sends nothing; a deregistered
//! miner is reported and its old uid gets no weight; an unreachable node is a condition and a
//! retried reconcile error; a node that never answers holds up no other Leaderboard; two
//! Leaderboards of one namespace share its weights ConfigMap, each with keys of its own; a push
//! whose status write was lost is found in the chain's `Weights` and not sent again.

use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gradients::api::Leaderboard;
use gradients::chain::ss58;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use serde_json::json;

use crate::common::double::{Double, address, state, validator};
use crate::support::*;

/// Miner → (hotkey, uid in the double's subnet), as `examples/weights/uids.json` registers them.
const MINERS: [(&str, &str); 4] = [
    ("alice", "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"), // uid 2
    ("bob", "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"),   // uid 1
    ("dave", "5DAAnrj7VHTznn2AWBemMuyBwZWs6FNFjdyVXUeYum3PTXFy"),  // uid 3
    ("carol", "5FLSigC9HGRKVhB9FiEo4Y3koPsNmBmLJbpXg2mp1hXcS59Y"), // uid 4, deregistered below
];

fn leaderboard(ns: &str, name: &str, url: &str, secret: &str) -> String {
    format!(
        "apiVersion: gradients.io/v1alpha1
kind: Leaderboard
metadata: {{name: {name}, namespace: {ns}}}
spec:
  weightsConfigMap: gradients-weights
  sinks:
    chain: {{endpoint: \"{url}\", netuid: 56, hotkeySecretRef: {{name: {secret}}}}}
"
    )
}

/// A complete Evaluation finished a minute ago with these losses.
async fn evaluation(cluster: &Cluster, ns: &str, name: &str, losses: &[(&str, f64)]) {
    complete_evaluation(cluster, ns, name, chrono::Utc::now() - chrono::Duration::minutes(1), losses).await;
}

fn chain_condition(board: &Leaderboard) -> Option<(String, String)> {
    let status = board.status.as_ref()?;
    let c = status.conditions.iter().find(|c| c.type_ == "ChainSynced")?;
    Some((c.reason.clone(), c.message.clone()))
}

async fn wait_for_reason(boards: &Api<Leaderboard>, name: &str, reason: &str) -> Leaderboard {
    wait_until(&format!("Leaderboard {name}'s ChainSynced reason {reason}"), Duration::from_secs(60), || async {
        boards.get(name).await.ok().and_then(|b| chain_condition(&b)).is_some_and(|(r, _)| r == reason)
    })
    .await;
    boards.get(name).await.unwrap()
}

/// A node that accepts connections and never answers, until released (then it hangs up).
struct Silent {
    url: String,
    held: Arc<Mutex<Vec<TcpStream>>>,
    released: Arc<AtomicBool>,
}

impl Silent {
    fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let (held, released) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicBool::new(false)));
        let (h, r) = (held.clone(), released.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if !r.load(Ordering::SeqCst) {
                    h.lock().unwrap().push(stream);
                }
            }
        });
        Silent { url, held, released }
    }
    fn held(&self) -> usize {
        self.held.lock().unwrap().len()
    }
    fn release(&self) {
        self.released.store(true, Ordering::SeqCst);
        self.held.lock().unwrap().clear();
    }
}

#[tokio::test]
#[ignore = "needs the e2e cluster: e2e/test -- cargo test --test operator_e2e -- --ignored"]
async fn the_chain_sink_pushes_once_per_change_and_never_inside_the_window() {
    // carol's uid 4 now belongs to another hotkey: she is deregistered.
    let mut chain = state(1000, 0);
    chain["subnets"][0]["hotkeys"][4] = json!(ss58::encode(&[44; 32]));
    // Subnet 57: the same neurons, commit-reveal on.
    let mut committing = chain["subnets"][0].clone();
    committing["netuid"] = json!(57);
    committing["CommitRevealWeightsEnabled"] = json!(true);
    chain["subnets"].as_array_mut().unwrap().push(committing);
    let double = Double::start(&chain);

    let cluster = Cluster::connect().await;
    let ns = cluster.fresh_namespace("e2e-chain").await;
    // The key Secrets that give no key get namespaces of their own (each is read once per
    // Leaderboard); the main namespace holds a second Leaderboard on a node that never answers.
    let mut keyless = Vec::new();
    for prefix in ["e2e-chain-nokey", "e2e-chain-badkey", "e2e-chain-forbidden", "e2e-chain-down"] {
        keyless.push(cluster.fresh_namespace(prefix).await);
    }
    let commit_ns = cluster.fresh_namespace("e2e-chain-commit").await;
    let mut served: Vec<&str> = vec![&ns, &commit_ns];
    served.extend(keyless.iter().map(String::as_str));
    // The operator may read the named Secrets only; "elsewhere" is not among them.
    cluster.helm_install_chart_for_with(
        &served,
        &["--set-json", r#"chainSink.hotkeySecrets=["validator","broken","missing"]"#],
    );
    let keyfile = json!({"secretSeed": format!("0x{}", "09".repeat(32)), "ss58Address": address(&validator())});
    let secret = |ns: &str, name: &str, body: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\nstringData:\n  hotkey: '{body}'\n"
        )
    };
    cluster.apply_yaml(&secret(&ns, "validator", &keyfile.to_string())).await;
    cluster.apply_yaml(&secret(&keyless[1], "broken", r#"{"secretSeed": "#)).await;
    cluster.apply_yaml(&secret(&keyless[2], "elsewhere", &keyfile.to_string())).await;
    cluster.apply_yaml(&secret(&keyless[3], "validator", &keyfile.to_string())).await;
    cluster.apply_yaml(&secret(&commit_ns, "validator", &keyfile.to_string())).await;
    for (namespace, count) in [(&ns, MINERS.len()), (&commit_ns, 1)].into_iter().chain(keyless.iter().map(|k| (k, 1))) {
        for (miner, hotkey) in &MINERS[..count] {
            cluster
                .apply_yaml(&format!(
                    "apiVersion: gradients.io/v1alpha1\nkind: Miner\nmetadata: {{name: {miner}, namespace: {namespace}}}\nspec: {{strategy: lora-fast, hotkey: {hotkey}}}\n"
                ))
                .await;
        }
    }
    cluster.apply_yaml(&leaderboard(&ns, "main", &double.url, "validator")).await;
    // Named to sort first: the controller starts on it before "main".
    let silent = Silent::start();
    cluster.apply_yaml(&leaderboard(&ns, "backup", &silent.url, "validator")).await;
    // The last one's node is down: a port nothing listens on.
    let down = format!("ws://{}", std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap());
    let urls = [&double.url, &double.url, &double.url, &down];
    for ((namespace, secret), url) in keyless.iter().zip(["missing", "broken", "elsewhere", "validator"]).zip(urls) {
        cluster.apply_yaml(&leaderboard(namespace, "main", url, secret)).await;
        evaluation(&cluster, namespace, "first", &[("alice", 0.9)]).await;
    }
    // carol wins one task and alice the other: half the weight each, bob and dave none.
    evaluation(&cluster, &ns, "first", &[("alice", 0.9), ("bob", 1.1), ("dave", 1.3), ("carol", 0.8)]).await;
    evaluation(&cluster, &ns, "second", &[("alice", 0.7), ("bob", 1.1), ("dave", 1.3), ("carol", 0.9)]).await;

    let mut operator = Operator::start(&cluster, "chain-first");
    operator.wait_ready().await;
    let boards: Api<Leaderboard> = Api::namespaced(cluster.client.clone(), &ns);
    let main = wait_for_reason(&boards, "main", "Pushed").await;
    // "backup" still waits on its node (within the sink's 30 s read timeout), and held up nothing.
    assert!(silent.held() >= 1, "backup's reconcile reached its node");
    let backup = boards.get("backup").await.unwrap();
    assert_ne!(chain_condition(&backup).map(|(r, _)| r), Some("NodeError".to_string()), "backup still waits");
    silent.release();
    let backup = wait_for_reason(&boards, "backup", "NodeError").await;
    assert!(backup.status.unwrap().chain.unwrap_or_default().pushes.is_empty());
    // One ConfigMap, owned by both (neither its controller), with keys for each.
    let config_maps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), &ns);
    let weights = config_maps.get("gradients-weights").await.unwrap();
    let data = weights.data.clone().unwrap();
    let keys: Vec<&str> = data.keys().map(String::as_str).collect();
    assert_eq!(keys, ["backup.computedAt", "backup.weights.json", "main.computedAt", "main.weights.json"]);
    assert_eq!(data["backup.weights.json"], data["main.weights.json"], "the same Evaluations, the same weights");
    let owners = weights.metadata.owner_references.clone().unwrap();
    let mut owner_names: Vec<&str> = owners.iter().map(|o| o.name.as_str()).collect();
    owner_names.sort();
    assert_eq!(owner_names, ["backup", "main"]);
    assert!(owners.iter().all(|o| o.controller != Some(true)), "{owners:?}");
    // Deleting one leaves the ConfigMap to the other.
    boards.delete("backup", &Default::default()).await.unwrap();
    wait_until("the ConfigMap owned by main alone", Duration::from_secs(60), || async {
        let owners = config_maps.get("gradients-weights").await.unwrap().metadata.owner_references.unwrap_or_default();
        owners.len() == 1 && owners[0].name == "main"
    })
    .await;
    let status = main.status.clone().unwrap().chain.unwrap();
    assert_eq!(status.validator.as_deref(), Some(address(&validator()).as_str()));
    let push = &status.pushes[0];
    assert_eq!(push.outcome, "ExtrinsicSuccess");
    assert_eq!(push.block, Some(1001));
    // Exactly one extrinsic reached the chain, and it is the one the status records.
    let accepted = double.accepted();
    assert_eq!(accepted.len(), 1, "{accepted:?}");
    assert_eq!(accepted[0]["outcome"], "ExtrinsicSuccess");
    assert_eq!(accepted[0]["signer"], address(&validator()));
    assert_eq!(accepted[0]["extrinsic_hash"].as_str(), push.extrinsic_hash.as_deref());
    assert_eq!(accepted[0]["call"]["dests"], json!(push.dests));
    assert_eq!(accepted[0]["call"]["weights"], json!(push.weights));
    assert_eq!(accepted[0]["call"]["version_key"], 10005000, "the chain's WeightsVersionKey");
    // carol is deregistered: reported, and her old uid 4 (another hotkey's now) gets nothing;
    // alice's half is all the chain sees.
    assert_eq!((push.dests.clone(), push.weights.clone()), (vec![2], vec![65535]));
    let unpaid: Vec<(&str, &str)> = status.unpaid.iter().map(|u| (u.miner.as_str(), u.reason.as_str())).collect();
    assert_eq!(unpaid, [("carol", "NotRegistered")]);
    let events = cluster.kubectl(&["get", "events", "-n", &ns, "--field-selector", "involvedObject.name=main"]);
    assert!(events.contains("ChainWeightsSet"), "{events}");

    // The key Secrets that give no key: a condition naming Secret and key, nothing sent.
    for (namespace, expected) in keyless.iter().zip([
        format!("Secret {}/missing key \"hotkey\": the Secret does not exist", keyless[0]),
        format!("Secret {}/broken key \"hotkey\"", keyless[1]),
        format!("Secret {}/elsewhere key \"hotkey\": the operator may not read it", keyless[2]),
    ]) {
        let boards: Api<Leaderboard> = Api::namespaced(cluster.client.clone(), namespace);
        let board = wait_for_reason(&boards, "main", "KeyUnavailable").await;
        let (_, message) = chain_condition(&board).unwrap();
        assert!(message.contains(&expected), "{message}");
        assert!(board.status.unwrap().chain.unwrap_or_default().pushes.is_empty());
    }
    assert_eq!(double.log().len(), 1, "only the main Leaderboard's push reached the chain");
    // A node that cannot be reached: the condition says so, the reconcile fails (and is retried
    // with the controller's backoff), nothing is recorded as sent.
    let boards_down: Api<Leaderboard> = Api::namespaced(cluster.client.clone(), &keyless[3]);
    let board = wait_for_reason(&boards_down, "main", "NodeError").await;
    let (_, message) = chain_condition(&board).unwrap();
    assert!(message.contains(&down) && message.contains("nothing sent"), "{message}");
    assert!(board.status.unwrap().chain.unwrap_or_default().pushes.is_empty());
    let metrics = operator.get("/metrics").await;
    for line in [
        r#"gradients_chain_push_total{outcome="success"} 1"#.to_string(),
        format!(r#"gradients_chain_last_push_timestamp_seconds{{leaderboard="main",namespace="{ns}"}} "#),
        r#"gradients_reconcile_errors_total{category="WeightSink",controller="leaderboard"} "#.to_string(),
    ] {
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
    for outcome in ["key_unavailable", "node_error"] {
        let zero = format!(r#"gradients_chain_push_total{{outcome="{outcome}"}} 0"#);
        assert!(!metrics.contains(&zero), "{zero} in\n{metrics}");
    }

    // The push's status write lost while the operator is down: the restarted one, knowing
    // nothing, finds the vector in the chain's `Weights`, records it and sends nothing.
    operator.stop().await;
    let lost = json!({"status": {"chain": null}});
    boards.patch_status("main", &Default::default(), &kube::api::Patch::Merge(&lost)).await.unwrap();
    let mut operator = Operator::start(&cluster, "chain-second");
    operator.wait_ready().await;
    wait_until("main's push recorded as on chain", Duration::from_secs(60), || async {
        let chain = boards.get("main").await.unwrap().status.unwrap().chain.unwrap_or_default();
        chain.pushes.first().is_some_and(|p| p.outcome == "OnChain")
    })
    .await;
    let chain = boards.get("main").await.unwrap().status.unwrap().chain.unwrap();
    assert_eq!((chain.pushes.len(), chain.pushes[0].block), (1, Some(1001)));
    assert_eq!((&chain.pushes[0].dests, &chain.pushes[0].weights), (&push.dests, &push.weights));
    assert_eq!(chain.synced_digest, status.synced_digest);
    assert_eq!(double.log().len(), 1, "nothing more reached the chain");
    let metrics = operator.get("/metrics").await;
    assert!(metrics.contains(r#"gradients_chain_push_total{outcome="on_chain"} 1"#), "{metrics}");
    // New weights, inside the window (LastUpdate 1001, limit 100, head 1001): it says so and
    // sends nothing.
    evaluation(&cluster, &ns, "third", &[("alice", 1.5), ("bob", 0.6), ("dave", 0.9), ("carol", 0.8)]).await;
    let main = wait_for_reason(&boards, "main", "RateLimited").await;
    let (_, message) = chain_condition(&main).unwrap();
    assert!(message.contains("nothing sent before block 1101"), "{message}");
    assert_eq!(main.status.unwrap().chain.unwrap().pushes.len(), 1, "no new push recorded");
    assert_eq!(double.log().len(), 1, "nothing more reached the chain");
    // main wrote its new weights; the deleted backup's keys went with that write.
    let data = config_maps.get("gradients-weights").await.unwrap().data.unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), ["main.computedAt", "main.weights.json"]);
    let table = cluster.kubectl(&["get", "leaderboards", "-A"]);
    assert!(table.contains("RateLimited") && table.contains("KeyUnavailable"), "{table}");
    println!("{table}");

    // A commit-reveal subnet (57): mode auto commits the weights timelocked to a future drand
    // round (the double holds the commit; it has no pulses to open it).
    let quicknet_round = || (chrono::Utc::now().timestamp() as u64 - 1_692_803_367) / 3;
    let earliest = quicknet_round();
    let committed = leaderboard(&commit_ns, "main", &double.url, "validator").replace("netuid: 56", "netuid: 57");
    cluster.apply_yaml(&committed).await;
    evaluation(&cluster, &commit_ns, "first", &[("alice", 0.9)]).await;
    let boards_commit: Api<Leaderboard> = Api::namespaced(cluster.client.clone(), &commit_ns);
    let board = wait_for_reason(&boards_commit, "main", "Pushed").await;
    let (_, message) = chain_condition(&board).unwrap();
    let push = board.status.unwrap().chain.unwrap().pushes[0].clone();
    let round = push.reveal_round.expect("a commit records its reveal round");
    assert!(message.contains(&format!("drand round {round}")), "{message}");
    let entry = double.accepted().into_iter().find(|e| e["call"]["netuid"] == 57).expect("the commit");
    assert_eq!(entry["outcome"], "ExtrinsicSuccess");
    assert_eq!(entry["call"]["call"], "commit_timelocked_mechanism_weights");
    assert_eq!(entry["call"]["commit"]["reveal_round"], round);
    assert_eq!(entry["call"]["commit"]["commit_reveal_version"], 4);
    assert_eq!(entry["extrinsic_hash"].as_str(), push.extrinsic_hash.as_deref());
    // alice alone (uid 2), a 47-byte payload: a 291-byte commit; its round is due within the next epoch
    // (361 blocks + 3, 12 s each) of the subnet.
    assert_eq!(entry["call"]["commit"]["commit"].as_str().unwrap().len(), 2 + 2 * 291);
    assert!(round > earliest && round <= quicknet_round() + (364 * 12) / 3 + 1, "{round} from {earliest}");
    assert_eq!((push.dests, push.weights), (vec![2], vec![65535]));
    operator.stop().await;
    for namespace in served {
        cluster.delete_namespace(namespace).await;
    }
}
