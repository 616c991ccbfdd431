use super::*;

fn doc(task: &str) -> String {
    format!(r#"{{"now": "2026-11-26T12:00:00Z", "tasks": [{task}]}}"#)
}

const GOOD_TASK: &str = r#"{"id": "t1", "type": "Dpo", "model_params_b": 8, "hours": 2, "finished_at": "2026-11-26T10:00:00Z",
  "submissions": [
    {"miner": "a", "submitted_at": "2026-11-26T09:00:00Z", "test_loss": 1.0, "synth_loss": 1.0},
    {"miner": "b", "submitted_at": "2026-11-26T09:30:00+01:00", "test_loss": NaN, "synth_loss": 1.0, "weights_sha256": "ab"},
    {"miner": "c", "submitted_at": "2026-11-26T09:00:00Z", "test_loss": "Infinity"},
    {"miner": "d", "submitted_at": "2026-11-26T09:00:00Z", "test_loss": 2.0, "synth_loss": 2.0, "extra": "ignored"}]}"#;

fn error_of(task: &str) -> String {
    parse_input(&doc(task)).unwrap_err().to_string()
}

#[test]
fn scores_a_document_with_python_style_non_finite_losses() {
    let report = score_document(&MechanismConfig::default(), &doc(GOOD_TASK)).unwrap();
    let scores: Vec<(&str, f64)> =
        report.leaderboard.tasks[0].submissions.iter().map(|s| (s.miner.as_str(), s.score)).collect();
    assert_eq!(scores, vec![("a", 3.0), ("b", -1.0), ("c", -1.0), ("d", 0.0)]);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["tasks"][0]["scores"][0]["miner"], "a");
    assert_eq!(json["miners"][0]["weight_u16"], 65535);
}

#[test]
fn bad_inputs_name_the_task_and_field() {
    let cases = [
        (
            GOOD_TASK.replace("\"Dpo\"", "\"Chat\""),
            "task \"t1\" (tasks[0]): field \"type\": unknown task type \"Chat\"",
        ),
        (GOOD_TASK.replace("\"hours\": 2", "\"hours\": -1"), "field \"hours\": must be a finite number >= 0, got -1"),
        (GOOD_TASK.replace("\"hours\": 2", "\"hours\": NaN"), "field \"hours\": must be a finite number >= 0, got NaN"),
        (GOOD_TASK.replace("\"model_params_b\": 8", "\"model_params_b\": Infinity"), "field \"model_params_b\""),
        (GOOD_TASK.replace("\"model_params_b\": 8,", ""), "field \"model_params_b\": is missing"),
        (
            GOOD_TASK.replace("2026-11-26T10:00:00Z", "yesterday"),
            "field \"finished_at\": \"yesterday\" is not an RFC3339",
        ),
        (
            GOOD_TASK.replace("\"miner\": \"b\"", "\"miner\": \"a\""),
            "field \"submissions[1].miner\": miner \"a\" appears more than once",
        ),
        (
            GOOD_TASK.replace("\"test_loss\": 2.0", "\"test_loss\": \"low\""),
            "field \"submissions[3].test_loss\": must be a number or null",
        ),
    ];
    for (task, expected) in cases {
        let message = error_of(&task);
        assert!(message.contains(expected), "expected {expected:?} in {message:?}");
    }
}

#[test]
fn malformed_json_and_top_level_errors() {
    assert!(parse_input("{\"now\": ").unwrap_err().to_string().starts_with("malformed JSON at line 1"));
    assert_eq!(
        parse_input(r#"{"now": "soon", "tasks": []}"#).unwrap_err().to_string(),
        "field \"now\": \"soon\" is not an RFC3339 timestamp (premature end of input)"
    );
    assert!(parse_input(r#"{"now": "2026-11-26T12:00:00Z"}"#).unwrap_err().to_string().contains("field \"tasks\""));
}

#[test]
fn nan_inside_strings_is_left_alone() {
    let text = doc(&GOOD_TASK.replace("\"id\": \"t1\"", "\"id\": \"NaN \\\" Infinity\""));
    let input = parse_input(&text).unwrap();
    assert_eq!(input.tasks[0].id, "NaN \" Infinity");
}

#[test]
fn published_weights_are_checked() {
    let report = score_document(&MechanismConfig::default(), &doc(GOOD_TASK)).unwrap();
    let agree: std::collections::BTreeMap<String, u16> = [("a".to_string(), 65535)].into();
    assert!(check_weights(&report, &agree).is_empty());
    let wrong: std::collections::BTreeMap<String, u16> = [("a".to_string(), 100), ("z".to_string(), 7)].into();
    assert_eq!(
        check_weights(&report, &wrong),
        vec!["a: published 100, recomputed 65535", "z: published 7, but it has no task in the window"]
    );
}
