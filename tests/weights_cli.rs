//! `gradients weights push --dry-run` as a validator runs it: real process, real files, exit codes.

mod common;

use std::process::Output;

use common::gradients;
use serde_json::Value;

fn example(file: &str) -> String {
    format!("{}/examples/{file}", common::repo().display())
}

/// A flag and its value.
type Flag<'a> = (&'a str, &'a str);

/// The example's push, each `(flag, value)` of `over` replacing the example's or added, then
/// `--dry-run` unless `dry_run` is false.
fn push(over: &[Flag], dry_run: bool) -> Output {
    let mut flags = vec![
        ("--records", example("score/records.json")),
        ("--netuid", "56".to_string()),
        ("--hotkeys", example("weights/hotkeys.json")),
        ("--uids", example("weights/uids.json")),
        ("--chain-params", example("weights/chain-params.json")),
    ];
    for (flag, value) in over {
        flags.retain(|(f, _)| f != flag);
        flags.push((flag, value.to_string()));
    }
    let mut args = vec!["weights", "push"];
    args.extend(flags.iter().flat_map(|(f, v)| [*f, v.as_str()]));
    if dry_run {
        args.push("--dry-run");
    }
    gradients(&args, None)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn prints_the_call_by_uid_and_reports_the_unregistered_miner() {
    let out = push(&[], true);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let call = &plan["call"];
    assert_eq!(
        (call["pallet"].as_str(), call["call"].as_str()),
        (Some("SubtensorModule"), Some("set_mechanism_weights"))
    );
    let args = &call["args"];
    assert_eq!(
        (args["netuid"].as_u64(), args["mecid"].as_u64(), args["version_key"].as_u64()),
        (Some(56), Some(0), Some(10005000))
    );
    // bob is uid 1, alice uid 2, carol uid 4 (uids.json); dave has weight 0; erin's hotkey
    // (Eve's) is not registered, so uid 0 (another hotkey) gets nothing either.
    assert_eq!(args["dests"], serde_json::json!([1, 2, 4]));
    assert_eq!(args["weights"], serde_json::json!([65535, 58973, 6167]));
    // The same call as SCALE bytes (from the bundled mainnet metadata): pallet 7, call 119,
    // netuid 56 (u16), mecid 0, dests and weights (compact length 3, u16 each), version key (u64).
    let call_data = "0x07773800000c0100020004000cffff5de6171808aa980000000000";
    assert_eq!(plan["call_data"], call_data);
    assert_eq!(plan["unregistered"], serde_json::json!(["5K-erin"]));
    assert!(stderr(&out).contains("no weight for 5K-erin (hotkey has no uid on the subnet)"), "{}", stderr(&out));

    // Without padding or a limit, the call's values are the `weight_u16` `gradients score` prints.
    let score = gradients(&["score", "--input", &example("score/records.json")], None);
    let report: Value = serde_json::from_slice(&score.stdout).unwrap();
    let u16_of = |miner: &str| {
        report["miners"].as_array().unwrap().iter().find(|m| m["miner"] == miner).unwrap()["weight_u16"].clone()
    };
    assert_eq!(args["weights"], serde_json::json!([u16_of("5G-bob"), u16_of("5F-alice"), u16_of("5H-carol")]));
}

#[test]
fn flags_override_the_chain_parameters_file() {
    // MinAllowedWeights 5 > 3 weighted uids: every uid is padded, as the SDK does.
    let out = push(&[("--min-allowed-weights", "5")], true);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["call"]["args"]["dests"], serde_json::json!([0, 1, 2, 3, 4]));
    assert_eq!(plan["chain"]["MinAllowedWeights"], 5);
}

#[test]
fn records_come_from_stdin() {
    let text = std::fs::read_to_string(example("score/records.json")).unwrap();
    let (hotkeys, uids) = (example("weights/hotkeys.json"), example("weights/uids.json"));
    let args = ["weights", "push", "--records", "-", "--netuid", "3", "--hotkeys", &hotkeys, "--uids", &uids];
    let flags =
        ["--min-allowed-weights", "1", "--max-weights-limit", "65535", "--weights-version-key", "0", "--dry-run"];
    let out = gradients(&[&args[..], &flags[..]].concat(), Some(&text));
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["call"]["args"]["netuid"], 3);
}

#[test]
fn bad_inputs_exit_2_naming_the_file_and_field_and_print_no_call() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let typo = write("hotkeys.json", r#"{"5F-alice": "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQZ"}"#);
    let misspelt = write("params.json", r#"{"MaxWeightLimit": 100}"#);
    let cases: [(&[Flag], bool, &str); 5] = [
        (&[("--hotkeys", &typo)], true, "hotkeys.json: field \"5F-alice\": \"5Grwva"),
        (&[("--chain-params", &misspelt)], true, "params.json: field \"MaxWeightLimit\": unknown chain parameter"),
        (&[("--subnetwork-n", "6")], true, "uids.json: field \"(document)\": lists 5 uids but SubnetworkN is 6"),
        (&[("--netuid", "0")], true, "root network"),
        (&[], false, "--dry-run is required"),
    ];
    for (extra, dry_run, expected) in cases {
        let out = push(extra, dry_run);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(expected), "{extra:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{extra:?}");
    }
}

#[test]
fn commit_reveal_on_refuses_a_plain_set() {
    let dir = tempfile::tempdir().unwrap();
    let params = dir.path().join("p.json");
    std::fs::write(&params, r#"{"MinAllowedWeights": 1, "MaxWeightsLimit": 65535, "WeightsVersionKey": 0, "CommitRevealWeightsEnabled": true}"#).unwrap();
    let out = push(&[("--chain-params", params.to_str().unwrap())], true);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("CommitRevealWeightsEnabled is true on netuid 56"), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
}
