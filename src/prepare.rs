//! `gradients prepare`: the dataset split as a workload of its own, for the operator's
//! preparation Job. The same split code as a local run (`mechanism::allocation::split_rows`,
//! `local::dataset::write_splits`); the split sizes go to stdout and to the termination message.

use std::path::{Path, PathBuf};

use crate::local::dataset::{self, Dataset};
use crate::mechanism::allocation::split_rows;
use crate::mechanism::{MechanismConfig, TaskType};
use crate::tournament::DatasetFacts;

#[derive(Debug, Clone)]
pub struct PrepareArgs {
    pub task_type: TaskType,
    /// A JSONL file (text) or a folder of images with captions; `file://` is accepted.
    pub dataset: PathBuf,
    pub synthetic: Option<PathBuf>,
    pub output: PathBuf,
    pub seed: u64,
    /// GRPO reward functions as JSON, written next to the splits as `reward_functions.json`.
    pub reward_functions: Option<String>,
}

/// The task type from the trainer CLI's spelling (`instruct`, `dpo`, `grpo`, `image`) or ours.
pub fn parse_task_type(text: &str) -> Result<TaskType, String> {
    match text {
        "instruct" => Ok(TaskType::InstructText),
        "dpo" => Ok(TaskType::Dpo),
        "grpo" => Ok(TaskType::Grpo),
        "image" => Ok(TaskType::Image),
        other => other.parse().map_err(|e: crate::mechanism::UnknownTaskType| e.to_string()),
    }
}

fn local(path: &Path) -> PathBuf {
    let text = path.to_string_lossy();
    PathBuf::from(text.strip_prefix("file://").unwrap_or(&text).to_string())
}

fn read(task_type: TaskType, path: &Path) -> Result<Dataset, String> {
    if task_type.is_text() { dataset::read_jsonl(&local(path)) } else { dataset::read_images(&local(path)) }
}

pub fn prepare(config: &MechanismConfig, args: &PrepareArgs) -> Result<DatasetFacts, String> {
    let data = read(args.task_type, &args.dataset)?;
    if data.is_empty() {
        return Err(format!("{}: the dataset is empty", args.dataset.display()));
    }
    let synthetic = args.synthetic.as_deref().map(|p| read(args.task_type, p)).transpose()?;
    let plan = split_rows(config, args.task_type, data.len(), args.seed);
    let output = local(&args.output);
    let facts = dataset::write_splits(&data, &plan, synthetic.as_ref(), &output)
        .map_err(|e| format!("cannot write the splits into {}: {e}", output.display()))?;
    if let Some(rewards) = &args.reward_functions {
        let file = output.join(crate::workloads::REWARD_FUNCTIONS_FILE);
        std::fs::write(&file, rewards).map_err(|e| format!("{}: {e}", file.display()))?;
    }
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_a_jsonl_file_and_reports_the_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("d.jsonl");
        let rows: String = (0..50).map(|i| format!("{{\"q\": \"{i}\", \"a\": \"x\"}}\n")).collect();
        std::fs::write(&input, rows).unwrap();
        let args = PrepareArgs {
            task_type: parse_task_type("instruct").unwrap(),
            dataset: PathBuf::from(format!("file://{}", input.display())),
            synthetic: None,
            output: dir.path().join("data"),
            seed: 42,
            reward_functions: None,
        };
        let facts = prepare(&MechanismConfig::default(), &args).unwrap();
        assert_eq!(facts.rows, 50);
        assert!(facts.train > 0 && facts.test > 0);
        assert!(dir.path().join("data/train.jsonl").is_file() && dir.path().join("data/test.jsonl").is_file());
        assert!(parse_task_type("nonsense").is_err());
    }
}
