use std::collections::BTreeMap;

use super::*;

fn hotkey(n: u8) -> String {
    ss58::encode(&[n; 32])
}

fn params(n: u16, min: u16, max: u16) -> ChainParams {
    ChainParams {
        subnetwork_n: Some(n),
        min_allowed_weights: Some(min),
        max_weights_limit: Some(max),
        weights_version_key: Some(7),
        commit_reveal_weights_enabled: None,
    }
}

fn standings(pairs: &[(&str, f64)]) -> Vec<(String, f64)> {
    pairs.iter().map(|(m, w)| (m.to_string(), *w)).collect()
}

fn map<V: Clone>(pairs: &[(&str, V)]) -> BTreeMap<String, V> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

#[test]
fn call_carries_uids_u16_weights_and_the_version_key() {
    let (a, b) = (hotkey(1), hotkey(2));
    let plan = plan(
        &standings(&[("alice", 0.75), ("bob", 0.25)]),
        &map(&[("alice", a.clone()), ("bob", b.clone())]),
        &map(&[(&b, 0u16), (&a, 3)]),
        12,
        0,
        params(4, 1, 65535),
    )
    .unwrap();
    assert_eq!((plan.call.pallet, plan.call.call), ("SubtensorModule", "set_mechanism_weights"));
    let args = &plan.call.args;
    assert_eq!((args.netuid, args.mecid, args.version_key), (12, 0, 7));
    assert_eq!((args.dests.clone(), args.weights.clone()), (vec![0, 3], vec![21845, 65535]));
    let alice = &plan.miners[0];
    assert_eq!((alice.uid, alice.weight_u16), (Some(3), 65535));
}

#[test]
fn unregistered_and_unnamed_miners_are_reported_and_get_nothing() {
    let (a, ghost) = (hotkey(1), hotkey(9));
    let plan = plan(
        &standings(&[("alice", 0.5), ("ghost", 0.3), ("nokey", 0.2)]),
        &map(&[("alice", a.clone()), ("ghost", ghost)]),
        &map(&[(&a, 1u16)]),
        3,
        0,
        params(3, 0, 65535),
    )
    .unwrap();
    assert_eq!((plan.call.args.dests.clone(), plan.call.args.weights.clone()), (vec![1], vec![65535]));
    assert_eq!(plan.unregistered, vec!["ghost".to_string()]);
    assert_eq!(plan.without_hotkey, vec!["nokey".to_string()]);
}

#[test]
fn a_miner_named_like_a_registered_hotkey_does_not_get_its_uid() {
    // Attack: name yourself after someone's hotkey, hoping names are read as hotkeys.
    let (victim, bob) = (hotkey(1), hotkey(2));
    let plan = plan(
        &standings(&[(&victim, 0.5), ("bob", 0.5)]),
        &map(&[("bob", bob.clone())]),
        &map(&[(&victim, 0u16), (&bob, 1)]),
        2,
        0,
        params(2, 0, 65535),
    )
    .unwrap();
    assert_eq!(plan.call.args.dests, vec![1]);
    assert_eq!(plan.without_hotkey, vec![victim]);
}

#[test]
fn two_miners_on_one_hotkey_are_refused() {
    // Attack: a second Miner claims a registered hotkey to pile its weight onto that uid.
    let text = format!(r#"{{"alice": "{0}", "mallory": "{0}"}}"#, hotkey(1));
    let err = parse_hotkeys("hotkeys.json", &text).unwrap_err().to_string();
    assert!(err.contains("hotkeys.json: field \"mallory\"") && err.contains("also miner \"alice\""), "{err}");
}

#[test]
fn hotkey_files_refuse_what_is_not_a_bittensor_address() {
    let err = parse_hotkeys("h.json", r#"{"alice": "5F-alice"}"#).unwrap_err().to_string();
    assert!(err.contains("h.json: field \"alice\"") && err.contains("not an SS58 address"), "{err}");
    let err = parse_hotkeys("h.json", r#"{"alice": 5}"#).unwrap_err().to_string();
    assert!(err.contains("field \"alice\": must be the miner's SS58 hotkey"), "{err}");
    assert!(parse_hotkeys("h.json", "[]").unwrap_err().to_string().contains("must be a JSON object"));
}

#[test]
fn uids_come_as_the_metagraph_list_or_an_object() {
    let (a, b) = (hotkey(1), hotkey(2));
    let (uids, n) = parse_uids("u", &format!(r#"["{a}", "{b}"]"#)).unwrap();
    assert_eq!((uids, n), (map(&[(&a, 0u16), (&b, 1)]), Some(2)));
    let (uids, n) = parse_uids("u", &format!(r#"{{"{a}": 5}}"#)).unwrap();
    assert_eq!((uids, n), (map(&[(&a, 5u16)]), None));
    let err = parse_uids("u", &format!(r#"["{a}", "{a}"]"#)).unwrap_err().to_string();
    assert!(err.contains("u: field \"[1]\"") && err.contains("also uid 0"), "{err}");
    let err = parse_uids("u", &format!(r#"{{"{a}": 70000}}"#)).unwrap_err().to_string();
    assert!(err.contains("must be a uid from 0 to 65535, not 70000"), "{err}");
    let err = parse_uids("u", r#"["nope"]"#).unwrap_err().to_string();
    assert!(err.contains("field \"[0]\"") && err.contains("not an SS58 address"), "{err}");
}

#[test]
fn chain_params_name_the_bad_field() {
    let ok = ChainParams::parse(
        "p",
        r#"{"SubnetworkN": 256, "MinAllowedWeights": 8, "MaxWeightsLimit": 65535, "WeightsVersionKey": 10005000, "CommitRevealWeightsEnabled": false}"#,
    )
    .unwrap();
    assert_eq!(ok.subnetwork_n, Some(256));
    assert_eq!(ok.weights_version_key, Some(10_005_000));
    let err = |text: &str| ChainParams::parse("p.json", text).unwrap_err().to_string();
    assert!(
        err(r#"{"MaxWeightsLimit": 65536}"#)
            .contains("p.json: field \"MaxWeightsLimit\": must be an integer from 0 to 65535")
    );
    assert!(err(r#"{"MinAllowedWeights": -1}"#).contains("field \"MinAllowedWeights\""));
    assert!(err(r#"{"MaxWeightLimit": 1}"#).contains("field \"MaxWeightLimit\": unknown chain parameter"));
    assert!(err(r#"{"CommitRevealWeightsEnabled": 1}"#).contains("must be true or false"));
}

#[test]
fn flags_override_the_file() {
    let file = params(10, 1, 65535);
    let flags = ChainParams { max_weights_limit: Some(100), ..ChainParams::default() };
    assert_eq!(file.overridden_by(flags), ChainParams { max_weights_limit: Some(100), ..file });
}

#[test]
fn missing_parameters_root_netuid_and_commit_reveal_refuse_the_call() {
    let run = |netuid: u16, p: ChainParams| plan(&[], &BTreeMap::new(), &BTreeMap::new(), netuid, 0, p);
    let err = run(1, ChainParams { min_allowed_weights: None, ..params(4, 1, 65535) }).unwrap_err().to_string();
    assert!(err.contains("field \"MinAllowedWeights\": not given: pass --min-allowed-weights"), "{err}");
    let err = run(1, ChainParams { weights_version_key: None, ..params(4, 1, 65535) }).unwrap_err().to_string();
    assert!(err.contains("\"WeightsVersionKey\""), "{err}");
    assert!(run(0, params(4, 1, 65535)).unwrap_err().to_string().contains("root network"));
    let on = ChainParams { commit_reveal_weights_enabled: Some(true), ..params(4, 1, 65535) };
    assert_eq!(run(5, on), Err(PushError::CommitReveal { netuid: 5 }));
}

#[test]
fn rate_limit_window_counts_from_the_block_that_would_include_the_call() {
    // Never set: now. Set at 1000 with a limit of 100: block 1100 is the first that accepts,
    // so at 1099 the next block is fine and at 1098 one more block must pass.
    assert_eq!(blocks_until_allowed(0, 100, 5), 0);
    assert_eq!(blocks_until_allowed(1000, 100, 1099), 0);
    assert_eq!(blocks_until_allowed(1000, 100, 1098), 1);
    assert_eq!(blocks_until_allowed(1000, 100, 1000), 99);
    assert_eq!(blocks_until_allowed(1000, 0, 1000), 0);
    assert_eq!(blocks_until_allowed(u64::MAX, u64::MAX, 0), u64::MAX - 1);
}
