//! `gradients score` as a user runs it: real process, real files, stdin, exit codes.

mod common;

use common::gradients;

fn example() -> String {
    format!("{}/examples/score/records.json", common::repo().display())
}

#[test]
fn scores_the_example_records() {
    let out = gradients(&["score", "--input", &example()], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let miners: Vec<&str> = report["miners"].as_array().unwrap().iter().map(|m| m["miner"].as_str().unwrap()).collect();
    // grpo-old is 16 days old: its only miner is not on the leaderboard, but its task is scored.
    assert_eq!(miners, vec!["5F-alice", "5G-bob", "5H-carol", "5J-dave", "5K-erin"]);
    let tasks = report["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 4);
    let instruct = tasks.iter().find(|t| t["id"] == "instruct-qwen-0.5b").unwrap();
    let status = |miner: &str| {
        let s = instruct["scores"].as_array().unwrap().iter().find(|s| s["miner"] == miner).unwrap();
        (s["status"].as_str().unwrap().to_string(), s["score"].as_f64().unwrap())
    };
    // dave's synthetic loss is far above his test loss compared with everyone else: flagged.
    assert_eq!(status("5J-dave"), ("flagged".into(), 0.0));
    // carol has bob's losses but submitted later: duplicate.
    assert_eq!(status("5H-carol"), ("duplicate".into(), -1.0));
    assert_eq!(status("5F-alice"), ("ranked".into(), 3.0));
    assert_eq!(status("5K-erin"), ("failed".into(), -1.0));
    let u16s: Vec<u64> =
        report["miners"].as_array().unwrap().iter().map(|m| m["weight_u16"].as_u64().unwrap()).collect();
    assert_eq!(u16s.iter().max(), Some(&65535));
}

#[test]
fn reads_stdin_and_checks_published_weights() {
    let text = std::fs::read_to_string(example()).unwrap();
    let first = gradients(&["score", "--input", "-"], Some(&text));
    assert!(first.status.success());
    let report: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    let published: serde_json::Map<String, serde_json::Value> = report["miners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["miner"].as_str().unwrap().to_string(), m["weight_u16"].clone()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.json");
    std::fs::write(&good, serde_json::to_string(&published).unwrap()).unwrap();
    assert!(gradients(&["score", "--input", &example(), "--expect", good.to_str().unwrap()], None).status.success());

    let mut tampered = published.clone();
    tampered.insert("5J-dave".into(), 65535.into());
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, serde_json::to_string(&tampered).unwrap()).unwrap();
    let out = gradients(&["score", "--input", &example(), "--expect", bad.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("5J-dave: published 65535"));
}

#[test]
fn bad_input_exits_2_with_nothing_on_stdout() {
    let text = std::fs::read_to_string(example()).unwrap().replace("\"hours\": 6", "\"hours\": -6");
    let out = gradients(&["score", "--input", "-"], Some(&text));
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("task \"dpo-llama-8b\"") && stderr.contains("\"hours\""), "{stderr}");

    let out = gradients(&["score", "--input", "/nonexistent/records.json"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}
