//! `gradients weights push --endpoint` against the chain double (`src/bin/chain-double`, a
//! stand-in for a subtensor node, named as such): a real process over a real WebSocket. The
//! double verifies signatures, nonces, eras, genesis and spec version, runs the pallet's
//! set-weights checks and records what it accepted; these tests read its log.

mod common;

use std::process::Output;

use common::double::{Double, address, key_file, push, state, validator};

use gradients::chain::{call_data, ss58};
use serde_json::json;
use subxt::config::substrate::SpecVersionForRange;
use subxt::config::{SubstrateConfig, SubstrateExtrinsicParamsBuilder};
use subxt::utils::H256;
use subxt_signer::sr25519::Keypair;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_push_is_one_accepted_extrinsic_and_a_second_inside_the_window_sends_nothing() {
    let double = Double::start(&state(1000, 0));
    let key = key_file(double.dir.path(), &validator(), [9; 32]);
    let (out, report) = push(&double, &key, &[]);
    assert!(out.status.success(), "{}\n{report}", stderr(&out));
    assert_eq!(report["outcome"], "ExtrinsicSuccess", "{report}");
    assert_eq!(report["receipt"]["block"], 1001);
    let events = report["receipt"]["events"].as_array().unwrap();
    assert!(events.contains(&json!("SubtensorModule.WeightsSet")), "{events:?}");

    let accepted = double.accepted();
    assert_eq!(accepted.len(), 1, "{accepted:?}");
    let entry = &accepted[0];
    assert_eq!(entry["outcome"], "ExtrinsicSuccess");
    assert_eq!(entry["signer"], address(&validator()));
    assert_eq!(entry["extrinsic_hash"], report["receipt"]["extrinsic_hash"]);
    assert_eq!(entry["era"]["mortal"]["period"], 128, "signed mortal, as the SDK does");
    // The double decoded the same u16 vector the plan printed, by uid.
    let args = &report["plan"]["call"]["args"];
    assert_eq!((&entry["call"]["dests"], &entry["call"]["weights"]), (&args["dests"], &args["weights"]));
    assert_eq!(entry["call"]["version_key"], 10005000);
    assert_eq!(args["dests"], json!([1, 2, 4]), "erin's hotkey has no uid: no weight");
    assert_eq!(report["plan"]["unregistered"], json!(["5K-erin"]));

    // LastUpdate is now 1001 on the chain: the next push is inside the 100-block window.
    let (out, report) = push(&double, &key, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!((report["sent"].as_bool(), report["outcome"].as_str()), (Some(false), Some("RateLimited")));
    assert!(stderr(&out).contains("nothing sent") && stderr(&out).contains("block 1101"), "{}", stderr(&out));
    assert_eq!(double.log().len(), 1, "nothing reached the chain");
    // The chain's `Weights` row of the validator (uid 5) is the vector it took.
    let pairs: Vec<serde_json::Value> = (0..3).map(|i| json!([args["dests"][i], args["weights"][i]])).collect();
    assert_eq!(report["chain"]["weights"], json!(pairs), "{report}");
}

#[test]
fn a_deregistered_miner_is_reported_and_its_old_uid_gets_no_weight() {
    let mut chain = state(1000, 0);
    // carol's uid 4 now belongs to another hotkey.
    chain["subnets"][0]["hotkeys"][4] = json!(ss58::encode(&[44; 32]));
    let double = Double::start(&chain);
    let key = key_file(double.dir.path(), &validator(), [9; 32]);
    let (out, report) = push(&double, &key, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(report["plan"]["unregistered"], json!(["5H-carol", "5K-erin"]));
    assert!(stderr(&out).contains("5H-carol"), "{}", stderr(&out));
    let accepted = double.accepted();
    assert_eq!(accepted[0]["call"]["dests"], json!([1, 2]));
}

#[test]
fn a_malformed_or_encrypted_key_file_is_named_and_nothing_is_sent() {
    let double = Double::start(&state(1000, 0));
    for (name, body) in [("broken.json", &b"{\"secretSeed\": "[..]), ("encrypted", b"$NACL\x00\x01secret")] {
        let path = double.dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        let (out, _) = push(&double, &path, &[]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(path.to_str().unwrap()) && stderr(&out).contains("nothing sent"),
            "{}",
            stderr(&out)
        );
        assert!(out.stdout.is_empty());
    }
    assert!(double.log().is_empty());
}

#[test]
fn a_failed_dispatch_is_reported_by_the_pallet_error_name() {
    let mut chain = state(1000, 0);
    chain["subnets"][0]["ValidatorPermit"] = json!([true, true, true, true, true, false]);
    let double = Double::start(&chain);
    let key = key_file(double.dir.path(), &validator(), [9; 32]);
    let (out, report) = push(&double, &key, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(report["outcome"], "Failed: SubtensorModule::NeuronNoValidatorPermit", "{report}");
    assert_eq!(double.accepted()[0]["outcome"], "NeuronNoValidatorPermit");
}

#[test]
fn a_node_on_another_runtime_version_gets_nothing_signed() {
    let version = call_data::runtime_version(&call_data::metadata(call_data::FINNEY_METADATA).unwrap()).unwrap();
    let mut chain = state(1000, 0);
    chain["spec_version"] = json!(version.spec_version + 1);
    let double = Double::start(&chain);
    let key = key_file(double.dir.path(), &validator(), [9; 32]);
    let (out, _) = push(&double, &key, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("refusing to sign"), "{}", stderr(&out));
    assert!(double.log().is_empty());
}

/// A `set_mechanism_weights` extrinsic signed offline for the given chain identity.
fn extrinsic(key: &Keypair, genesis: [u8; 32], spec_version: u32, nonce: u64) -> Vec<u8> {
    let md = call_data::metadata(call_data::FINNEY_METADATA).unwrap();
    let version = call_data::runtime_version(&md).unwrap();
    let config = SubstrateConfig::builder()
        .set_genesis_hash(H256(genesis))
        .set_metadata_for_spec_versions([(spec_version, md.clone())])
        .set_spec_version_for_block_ranges([SpecVersionForRange {
            block_range: 0..u64::MAX,
            spec_version,
            transaction_version: version.transaction_version,
        }])
        .build();
    let client = subxt::OfflineClient::new_with_config(config);
    let call = subxt::dynamic::tx(
        "SubtensorModule",
        "set_mechanism_weights",
        vec![
            subxt::dynamic::Value::u128(56),
            subxt::dynamic::Value::u128(0),
            subxt::dynamic::Value::unnamed_composite([subxt::dynamic::Value::u128(1)]),
            subxt::dynamic::Value::unnamed_composite([subxt::dynamic::Value::u128(65535)]),
            subxt::dynamic::Value::u128(10005000),
        ],
    );
    let params = SubstrateExtrinsicParamsBuilder::new().nonce(nonce).immortal().build();
    let at = client.at_block(0u64).unwrap();
    at.tx().create_signable_offline(&call, params).unwrap().sign(key).unwrap().into_encoded()
}

/// `author_submitExtrinsic` over the double's WebSocket: the hash, or the error's (code, data).
fn submit(url: &str, bytes: &[u8]) -> Result<String, (i32, String)> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let rpc = subxt::rpcs::RpcClient::from_insecure_url(url).await.unwrap();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let answer: Result<String, subxt::rpcs::Error> =
            rpc.request("author_submitExtrinsic", subxt::rpcs::rpc_params![format!("0x{hex}")]).await;
        answer.map_err(|e| match e {
            subxt::rpcs::Error::User(user) => {
                (user.code, user.data.map(|d| serde_json::from_str(d.get()).unwrap()).unwrap_or_default())
            }
            other => panic!("{other}"),
        })
    })
}

fn genesis(url: &str) -> [u8; 32] {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let hash: String = runtime.block_on(async {
        let rpc = subxt::rpcs::RpcClient::from_insecure_url(url).await.unwrap();
        rpc.request("chain_getBlockHash", subxt::rpcs::rpc_params![0]).await.unwrap()
    });
    let bytes: Vec<u8> = (2..66).step_by(2).map(|i| u8::from_str_radix(&hash[i..i + 2], 16).unwrap()).collect();
    bytes.try_into().unwrap()
}

#[test]
fn the_double_refuses_forged_signatures_other_chains_stale_runtimes_and_the_rate_limit() {
    let double = Double::start(&state(1000, 950));
    let key = validator();
    let spec =
        call_data::runtime_version(&call_data::metadata(call_data::FINNEY_METADATA).unwrap()).unwrap().spec_version;
    let genesis = genesis(&double.url);
    let bad_proof = Err((1010, "Transaction has a bad signature".to_string()));

    let mut forged = extrinsic(&key, genesis, spec, 0);
    // compact length ‖ 0x84 ‖ 0x00 signer(32) ‖ 0x01 signature(64) ‖ …
    let prefix = [1, 2, 4, 0][usize::from(forged[0] & 0b11)];
    forged[prefix + 1 + 33 + 1 + 10] ^= 1;
    assert_eq!(submit(&double.url, &forged), bad_proof, "forged signature");
    assert_eq!(submit(&double.url, &extrinsic(&key, [7; 32], spec, 0)), bad_proof, "another chain's genesis");
    assert_eq!(submit(&double.url, &extrinsic(&key, genesis, spec - 1, 0)), bad_proof, "the previous runtime");
    assert_eq!(
        submit(&double.url, &extrinsic(&key, genesis, spec, 3)),
        Err((1010, "Transaction will be valid in the future".into()))
    );
    // Well signed, but LastUpdate 950 + 100 > 1001: the pool's RateLimitExceeded.
    let limited = submit(&double.url, &extrinsic(&key, genesis, spec, 0));
    assert_eq!(limited, Err((1010, "Custom error: 6".into())));
    assert_eq!(gradients::chain::node::pool_error_name("Custom error: 6"), "RateLimitExceeded");
    assert!(double.accepted().is_empty());
    assert_eq!(double.log().len(), 5);

    // The same extrinsic from an account whose window is over is accepted: the checks can pass.
    let fresh = Double::start(&state(1000, 0));
    let genesis = self::genesis(&fresh.url);
    assert!(submit(&fresh.url, &extrinsic(&key, genesis, spec, 0)).is_ok());
    assert_eq!(submit(&fresh.url, &extrinsic(&key, genesis, spec, 0)), Err((1010, "Transaction is outdated".into())));
    assert_eq!(fresh.accepted().len(), 1);
}

#[test]
fn the_window_the_cli_waits_out_is_the_one_the_chain_enforces() {
    // Head 1000, limit 100: the call lands in block 1001, which accepts LastUpdate ≤ 901.
    for (last_update, outcome) in [(901, "ExtrinsicSuccess"), (902, "RateLimited")] {
        let double = Double::start(&state(1000, last_update));
        let key = key_file(double.dir.path(), &validator(), [9; 32]);
        let (out, report) = push(&double, &key, &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(report["outcome"], outcome, "LastUpdate {last_update}: {report}");
        assert_eq!(double.accepted().len(), usize::from(outcome == "ExtrinsicSuccess"));
    }
}

#[test]
fn on_a_commit_reveal_subnet_the_push_is_one_timelocked_commit_rate_limited_like_a_set() {
    use gradients::chain::tlock;
    let mut chain = state(1000, 0);
    chain["subnets"][0]["CommitRevealWeightsEnabled"] = json!(true);
    let double = Double::start(&chain);
    let key = key_file(double.dir.path(), &validator(), [9; 32]);
    let now_ms = || chrono::Utc::now().timestamp_millis() as u64;
    let before = now_ms();
    let (out, report) = push(&double, &key, &[]);
    let after = now_ms();
    assert!(out.status.success(), "{}\n{report}", stderr(&out));
    assert_eq!(report["outcome"], "ExtrinsicSuccess", "{report}");
    let events = report["receipt"]["events"].as_array().unwrap();
    assert!(events.contains(&json!("SubtensorModule.TimelockedWeightsCommitted")), "{events:?}");
    let accepted = double.accepted();
    assert_eq!(accepted.len(), 1, "{accepted:?}");
    let call = &accepted[0]["call"];
    assert_eq!(call["call"], "commit_timelocked_mechanism_weights");
    assert_eq!(call["commit"]["commit"], report["commit"]["commit"]);
    assert_eq!(call["commit"]["commit_reveal_version"], 4);
    // Netuid 56, tempo 360, head 1000: aimed at block 1029, 29 blocks of 12 s after the push.
    let schedule = tlock::Schedule { netuid: 56, tempo: 360, reveal_period_epochs: 1, head: 1000 };
    let round = call["commit"]["reveal_round"].as_u64().unwrap();
    let earliest = tlock::reveal_round(&schedule, before, tlock::BLOCK_MS);
    assert!((earliest..=tlock::reveal_round(&schedule, after, tlock::BLOCK_MS)).contains(&round), "{round}");
    // The plan's three uids sealed: a 55-byte payload, a 299-byte commit.
    assert_eq!(report["plan"]["call"]["args"]["dests"], json!([1, 2, 4]));
    assert_eq!(call["commit"]["commit"].as_str().unwrap().len(), 2 + 2 * 299);
    // Commits are rate-limited like sets: the next push is inside the window.
    let (out, report) = push(&double, &key, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(report["outcome"], "RateLimited");
    assert_eq!(double.log().len(), 1, "nothing more reached the chain");

    // The version sent is the chain's `CommitRevealWeightsVersion` (the double refuses any other).
    chain["CommitRevealWeightsVersion"] = json!(5);
    let other = Double::start(&chain);
    let (out, report) = push(&other, &key, &[]);
    assert!(out.status.success(), "{}\n{report}", stderr(&out));
    assert_eq!(other.accepted()[0]["call"]["commit"]["commit_reveal_version"], 5);
}

#[test]
fn an_unregistered_validator_sends_nothing() {
    let double = Double::start(&state(1000, 0));
    let key = key_file(double.dir.path(), &validator(), [9; 32]);
    let mut chain = state(1000, 0);
    chain["subnets"][0]["hotkeys"].as_array_mut().unwrap().pop();
    let unregistered = Double::start(&chain);
    let (out, report) = push(&unregistered, &key, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!((report["sent"].as_bool(), report["outcome"].as_str()), (Some(false), Some("NotRegistered")));
    assert!(unregistered.log().is_empty());
}

/// The double's own commit checks, through the node API: another commit-reveal version, and a
/// commit where commit-reveal is off, fail at dispatch by name; the chain's version passes.
#[tokio::test]
async fn the_double_refuses_commits_of_another_version_or_where_commit_reveal_is_off() {
    use gradients::chain::{keyfile, node::Node, tlock::TimelockedCommit};
    let mut chain = state(1000, 0);
    let mut committing = chain["subnets"][0].clone();
    committing["netuid"] = json!(57);
    committing["CommitRevealWeightsEnabled"] = json!(true);
    chain["subnets"].as_array_mut().unwrap().push(committing);
    let double = Double::start(&chain);
    let key = keyfile::load(&key_file(double.dir.path(), &validator(), [9; 32])).unwrap();
    let node = Node::connect(&double.url).await.unwrap();
    let commit = |netuid, version| TimelockedCommit {
        netuid,
        mecid: 0,
        commit: vec![1, 2, 3],
        reveal_round: 1_000_000,
        commit_reveal_version: version,
    };
    for (netuid, version, error) in
        [(57, 3, "SubtensorModule::IncorrectCommitRevealVersion"), (56, 4, "SubtensorModule::CommitRevealDisabled")]
    {
        match node.commit_timelocked(&key, &commit(netuid, version)).await {
            Err(gradients::chain::node::NodeError::Failed { error: name, .. }) => assert_eq!(name, error),
            other => panic!("{other:?}"),
        }
    }
    let receipt = node.commit_timelocked(&key, &commit(57, 4)).await.unwrap();
    assert!(receipt.events.contains(&"SubtensorModule.TimelockedWeightsCommitted".to_string()), "{receipt:?}");
}
