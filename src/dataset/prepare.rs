//! `gradients prepare`: the preparation as a workload of its own, for the operator's Job. The
//! same code as a local run ([`super::prepare`]); the split sizes go to stdout and to the
//! termination message.

use std::path::{Path, PathBuf};

use crate::mechanism::{MechanismConfig, TaskType};
use crate::tournament::DatasetFacts;
use crate::workloads::contract::PreparedData;

#[derive(Debug, Clone)]
pub struct PrepareArgs {
    pub task_type: TaskType,
    /// A JSONL file (text) or a folder of images with captions; `file://` is accepted.
    pub dataset: PathBuf,
    pub synthetic: Option<PathBuf>,
    /// The prepared data's root (`training/` and `heldout/` below it).
    pub output: PathBuf,
    pub seed: u64,
    /// The column mapping as the CLIs take it (`workloads::contract::columns_arg`).
    pub columns: Option<String>,
    /// GRPO reward functions as JSON, written among the training inputs.
    pub reward_functions: Option<String>,
}

fn local(path: &Path) -> PathBuf {
    let text = path.to_string_lossy();
    PathBuf::from(text.strip_prefix("file://").unwrap_or(&text).to_string())
}

/// Reads and checks the inputs, then writes the split. Errors name the option at fault.
pub fn run(config: &MechanismConfig, args: &PrepareArgs) -> Result<DatasetFacts, String> {
    let columns: std::collections::BTreeMap<String, String> = match &args.columns {
        Some(json) => {
            serde_json::from_str(json).map_err(|e| format!("--columns: not a JSON object of strings: {e}"))?
        }
        None => Default::default(),
    };
    if let Some(rewards) = &args.reward_functions {
        serde_json::from_str::<Vec<serde_json::Value>>(rewards)
            .map_err(|e| format!("--reward-functions: not a JSON list: {e}"))?;
    }
    let read = |option: &str, path: &Path| {
        let data = super::read(args.task_type, &local(path)).map_err(|e| format!("{option}: {e}"))?;
        super::columns::check(args.task_type, &columns, &data, &path.display().to_string())
            .map_err(|(key, message)| format!("--columns: {key}: {message}"))?;
        Ok::<_, String>(data)
    };
    let data = read("--dataset", &args.dataset)?;
    if data.is_empty() {
        return Err(format!("--dataset: {} is empty", args.dataset.display()));
    }
    let synthetic = args.synthetic.as_deref().map(|p| read("--synthetic", p)).transpose()?;
    let output = local(&args.output);
    let layout = PreparedData::under(&output.to_string_lossy());
    super::prepare(
        config,
        args.task_type,
        &data,
        synthetic.as_ref(),
        args.seed,
        args.reward_functions.as_deref(),
        &layout,
    )
    .map_err(|e| format!("--output: cannot write the split into {}: {e}", output.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads::contract::parse_cli_task_type;

    fn args(dir: &Path, columns: Option<&str>) -> PrepareArgs {
        PrepareArgs {
            task_type: parse_cli_task_type("grpo").unwrap(),
            dataset: PathBuf::from(format!("file://{}", dir.join("d.jsonl").display())),
            synthetic: None,
            output: dir.join("data"),
            seed: 42,
            columns: columns.map(str::to_string),
            reward_functions: Some(r#"[{"name":"r","source":"def r(c, **k): return [0.0]","weight":1.0}]"#.into()),
        }
    }

    #[test]
    fn splits_a_jsonl_file_into_training_inputs_and_held_out_data() {
        let dir = tempfile::tempdir().unwrap();
        let rows: String = (0..50).map(|i| format!("{{\"q\": \"{i}\", \"a\": \"x\"}}\n")).collect();
        std::fs::write(dir.path().join("d.jsonl"), rows).unwrap();
        let facts = run(&MechanismConfig::default(), &args(dir.path(), Some(r#"{"prompt":"q"}"#))).unwrap();
        assert_eq!(facts.rows, 50);
        assert!(facts.train > 0 && facts.test > 0);
        let data = dir.path().join("data");
        for file in
            ["training/train.jsonl", "training/reward_functions.json", "heldout/test.jsonl", "heldout/synth.jsonl"]
        {
            assert!(data.join(file).is_file(), "{file}");
        }
        assert!(!data.join("training/test.jsonl").exists());
        assert!(parse_cli_task_type("nonsense").is_err());
    }

    #[test]
    fn the_column_mapping_is_checked_against_the_dataset() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("d.jsonl"), "{\"q\": \"1\"}\n{\"q\": \"2\"}\n").unwrap();
        let error = run(&MechanismConfig::default(), &args(dir.path(), Some(r#"{"prompt":"question"}"#))).unwrap_err();
        assert!(error.starts_with("--columns: prompt: column \"question\" is not in the dataset"), "{error}");
        let error = run(&MechanismConfig::default(), &args(dir.path(), Some("[1]"))).unwrap_err();
        assert!(error.starts_with("--columns: not a JSON object"), "{error}");
        // Without a mapping the role's own name must be a column.
        let error = run(&MechanismConfig::default(), &args(dir.path(), None)).unwrap_err();
        assert!(error.contains("column \"prompt\" is not in the dataset"), "{error}");
        assert!(!dir.path().join("data").exists(), "nothing is written for a bad input");
    }
}
