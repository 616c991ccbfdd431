//! The workload contract: how each workload is invoked (arguments, environment) and where its
//! inputs and outputs are, defined once. The cluster builders (`workloads::*`) and the local
//! executor (`local::workload`) both render these values; the Python package reads the same
//! names from `trainer-image/workload-contract.json`, which [`describe`] generates
//! (`scripts/generate --check` and tests on both sides fail when either side drifts).
//!
//! The trainer's time budget is `--hours`, counted by the trainer from its own start: a pod's
//! start time is not known when its Job is written, so an absolute deadline cannot be put in a
//! Job spec. Executors cap the hours by the task's deadline when they start the workload
//! ([`budget_hours`]).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::api::task::RewardFunction;
use crate::mechanism::TaskType;

/// The reference trainer's and evaluator's entry point; the subcommand is the first argument.
pub const TRAINER_PROGRAM: [&str; 3] = ["python", "-m", "gradients_trainer"];
/// The operator image's entry point, which runs `prepare` (and `seal`).
pub const OPERATOR_PROGRAM: &str = "gradients";
/// Where a container writes its result; the kubelet copies it into the pod status.
pub const TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";

/// Below a prepared dataset's root: what trainers may read (read-only) ...
pub const TRAINING_DIR: &str = "training";
/// ... and the held-out data only the evaluator reads.
pub const HELDOUT_DIR: &str = "heldout";
/// GRPO reward functions, a JSON list of `{"name","source","weight"}`, among the training inputs.
pub const REWARD_FUNCTIONS_FILE: &str = "reward_functions.json";
/// Below a trainer's output (and a sealed copy): the model directory.
pub const MODEL_DIR: &str = "model";
/// Below a sealed submission: the manifest of every file's digest and the tree digest.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Below the held-out data: the set a generator model wrote (`spec.dataset.generator`).
pub const GENERATED_DIR: &str = "generated";
/// In [`GENERATED_DIR`]: the rows, and the record of how they were made.
pub const GENERATED_FILE: &str = "synthetic.jsonl";
/// Below a trainer's output: its summary (`steps`, `final_train_loss`, `stopped_by_deadline`).
pub const TRAINING_SUMMARY_FILE: &str = "training.json";

/// The task type as the CLIs spell it.
pub fn cli_task_type(task_type: TaskType) -> &'static str {
    match task_type {
        TaskType::InstructText => "instruct",
        TaskType::Dpo => "dpo",
        TaskType::Grpo => "grpo",
        TaskType::Image => "image",
    }
}

/// The inverse of [`cli_task_type`]; our own spelling (`InstructText`) is accepted too.
pub fn parse_cli_task_type(text: &str) -> Result<TaskType, String> {
    match text {
        "instruct" => Ok(TaskType::InstructText),
        "dpo" => Ok(TaskType::Dpo),
        "grpo" => Ok(TaskType::Grpo),
        "image" => Ok(TaskType::Image),
        other => other.parse().map_err(|e: crate::mechanism::UnknownTaskType| e.to_string()),
    }
}

fn join(dir: &str, name: &str) -> String {
    format!("{}/{name}", dir.trim_end_matches('/'))
}

/// A prepared dataset: the preparation step writes it, trainers read `training`, the
/// evaluator reads both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedData {
    pub training: TrainingInputs,
    pub heldout: HeldOut,
}

impl PreparedData {
    pub fn under(root: &str) -> Self {
        Self { training: TrainingInputs(join(root, TRAINING_DIR)), heldout: HeldOut(join(root, HELDOUT_DIR)) }
    }
}

/// What a trainer gets: the training split and, for GRPO, the reward functions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainingInputs(pub String);

impl TrainingInputs {
    pub fn dir(&self) -> &str {
        &self.0
    }
    /// JSONL for text, a folder of images with captions for image tasks.
    pub fn train(&self, task_type: TaskType) -> String {
        join(&self.0, if task_type.is_text() { "train.jsonl" } else { "train" })
    }
    pub fn reward_functions(&self) -> String {
        join(&self.0, REWARD_FUNCTIONS_FILE)
    }
}

/// The test and synthetic splits. Image tasks have no synthetic set: it is the test folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldOut(pub String);

impl HeldOut {
    pub fn dir(&self) -> &str {
        &self.0
    }
    pub fn test(&self, task_type: TaskType) -> String {
        join(&self.0, if task_type.is_text() { "test.jsonl" } else { "test" })
    }
    pub fn synth(&self, task_type: TaskType) -> String {
        join(&self.0, if task_type.is_text() { "synth.jsonl" } else { "test" })
    }
    /// Where a generator model writes the synthetic set ([`GENERATED_FILE`] inside).
    pub fn generated_dir(&self) -> String {
        join(&self.0, GENERATED_DIR)
    }
    /// The synthetic split the evaluator scores: the generated one when the task has a generator.
    pub fn synth_for(&self, task_type: TaskType, generated: bool) -> String {
        if generated { join(&self.generated_dir(), GENERATED_FILE) } else { self.synth(task_type) }
    }
}

/// A trainer's output directory: the model in `model/`, the summary in `training.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainerOutput(pub String);

impl TrainerOutput {
    pub fn dir(&self) -> &str {
        &self.0
    }
    pub fn model(&self) -> String {
        join(&self.0, MODEL_DIR)
    }
    pub fn summary(&self) -> String {
        join(&self.0, TRAINING_SUMMARY_FILE)
    }
}

/// A sealed copy of a trainer's model: `model/` and `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSubmission(pub String);

impl SealedSubmission {
    pub fn dir(&self) -> &str {
        &self.0
    }
    pub fn model(&self) -> String {
        join(&self.0, MODEL_DIR)
    }
    pub fn manifest(&self) -> String {
        join(&self.0, MANIFEST_FILE)
    }
}

/// The column mapping as the CLIs take it: a JSON object, `noInputFormat` spelled
/// `no_input_format`. `None` for an empty mapping (the defaults apply).
pub fn columns_arg(columns: &std::collections::BTreeMap<String, String>) -> Option<String> {
    if columns.is_empty() {
        return None;
    }
    let map: serde_json::Map<String, serde_json::Value> = columns
        .iter()
        .map(|(k, v)| {
            let key = if k == "noInputFormat" { "no_input_format".to_string() } else { k.clone() };
            (key, serde_json::Value::String(v.clone()))
        })
        .collect();
    Some(serde_json::Value::Object(map).to_string())
}

/// The reward functions file's content (and `prepare --reward-functions`' value).
pub fn reward_functions_json(functions: &[RewardFunction]) -> String {
    let list: Vec<serde_json::Value> =
        functions.iter().map(|f| serde_json::json!({"name": f.name, "source": f.source, "weight": f.weight})).collect();
    serde_json::Value::Array(list).to_string()
}

/// The hours a trainer gets when it starts `now`: its allotment, capped by the task's deadline
/// (at least a minute, so a late start still gets a valid budget the state machine then stops).
pub fn budget_hours(hours: f64, deadline: Option<DateTime<Utc>>, now: DateTime<Utc>) -> f64 {
    match deadline {
        Some(deadline) => hours.min(((deadline - now).num_seconds().max(60)) as f64 / 3600.0),
        None => hours,
    }
}

/// Numbers in arguments without a trailing `.0` and without exponent forms.
pub fn number_arg(value: f64) -> String {
    let text = format!("{value}");
    text.strip_suffix(".0").map(str::to_string).unwrap_or(text)
}

/// One command-line option of a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Flag {
    pub name: &'static str,
    /// Takes a value (`--seed 42`) rather than being a switch (`--score-base`).
    pub value: bool,
    pub required: bool,
}

const fn req(name: &'static str) -> Flag {
    Flag { name, value: true, required: true }
}
const fn opt(name: &'static str) -> Flag {
    Flag { name, value: true, required: false }
}
const fn switch(name: &'static str) -> Flag {
    Flag { name, value: false, required: false }
}

/// A workload kind's command: who runs it, its subcommand, its options and environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CommandSpec {
    /// `trainer` ([`TRAINER_PROGRAM`]) or `operator` ([`OPERATOR_PROGRAM`]).
    pub program: &'static str,
    pub subcommand: &'static str,
    pub flags: &'static [Flag],
    /// Environment variables the executors set (besides their own HOME, thread counts…).
    pub env: &'static [&'static str],
}

pub const TRAIN: CommandSpec = CommandSpec {
    program: "trainer",
    subcommand: "train",
    flags: &[
        req("--task-type"),
        req("--base-model"),
        req("--train-data"),
        opt("--columns"),
        opt("--reward-functions"),
        req("--hours"),
        req("--output"),
        opt("--strategy"),
        opt("--seed"),
        // Successive halving (`spec.halving`): continue from an earlier slice's output.
        opt("--resume-from"),
        // Never rendered by the operator: the one option a Miner's `args` may add.
        opt("--strategy-overrides"),
    ],
    env: &[
        "GRADIENTS_TASK_TYPE",
        "GRADIENTS_BASE_MODEL",
        "GRADIENTS_TRAIN_DATA",
        "GRADIENTS_HOURS",
        "GRADIENTS_OUTPUT",
        "PYTHONUNBUFFERED",
        "GRADIENTS_RESUME_FROM",
    ],
};

pub const EVALUATE: CommandSpec = CommandSpec {
    program: "trainer",
    subcommand: "evaluate",
    flags: &[
        req("--task-type"),
        req("--base-model"),
        opt("--submission"),
        // The sealed tree digest the evaluator verifies before it loads anything (HELPERS.md).
        opt("--submission-digest"),
        switch("--score-base"),
        req("--test-data"),
        req("--synth-data"),
        opt("--columns"),
        opt("--reward-functions"),
        opt("--profile"),
        opt("--seed"),
        opt("--termination-message-path"),
    ],
    env: &["HF_HUB_OFFLINE", "PYTHONUNBUFFERED"],
};

pub const PREPARE: CommandSpec = CommandSpec {
    program: "operator",
    subcommand: "prepare",
    flags: &[
        req("--task-type"),
        req("--dataset"),
        opt("--synthetic"),
        req("--output"),
        opt("--seed"),
        opt("--columns"),
        opt("--reward-functions"),
        opt("--termination-message-path"),
    ],
    env: &[],
};

pub const SEAL: CommandSpec = CommandSpec {
    program: "operator",
    subcommand: "seal",
    flags: &[
        req("--input"),
        req("--output"),
        opt("--max-file-bytes"),
        opt("--max-total-bytes"),
        opt("--max-files"),
        opt("--termination-message-path"),
    ],
    env: &[],
};

pub const SYNTHESIZE: CommandSpec = CommandSpec {
    program: "trainer",
    subcommand: "synthesize-eval",
    flags: &[
        req("--task-type"),
        req("--generator"),
        opt("--weaker-model"),
        req("--train-data"),
        opt("--test-data"),
        opt("--columns"),
        req("--rows"),
        opt("--temperature"),
        opt("--max-new-tokens"),
        opt("--seed"),
        req("--output"),
        opt("--termination-message-path"),
    ],
    env: &["HF_HUB_OFFLINE", "PYTHONUNBUFFERED"],
};

pub const COMMANDS: [&CommandSpec; 5] = [&PREPARE, &SYNTHESIZE, &TRAIN, &SEAL, &EVALUATE];

/// Builds an argument vector, refusing (in debug builds and tests) options the spec does not declare.
struct Argv {
    spec: &'static CommandSpec,
    args: Vec<String>,
}

impl Argv {
    fn new(spec: &'static CommandSpec) -> Self {
        Self { spec, args: vec![spec.subcommand.to_string()] }
    }

    fn declared(&self, name: &str, value: bool) {
        debug_assert!(
            self.spec.flags.iter().any(|f| f.name == name && f.value == value),
            "{name} is not an option of {} in the workload contract",
            self.spec.subcommand
        );
    }

    fn value(mut self, name: &str, value: impl Into<String>) -> Self {
        self.declared(name, true);
        self.args.extend([name.to_string(), value.into()]);
        self
    }

    fn maybe(self, name: &str, value: Option<impl Into<String>>) -> Self {
        match value {
            Some(value) => self.value(name, value),
            None => self,
        }
    }

    fn switch(mut self, name: &str, on: bool) -> Self {
        self.declared(name, false);
        if on {
            self.args.push(name.to_string());
        }
        self
    }
}

fn env(pairs: &[(&'static str, String)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

/// `gradients prepare`: split a dataset into the training inputs and the held-out data.
#[derive(Debug, Clone, PartialEq)]
pub struct PrepareInvocation {
    pub task_type: TaskType,
    pub dataset: String,
    pub synthetic: Option<String>,
    /// The prepared data's root ([`PreparedData::under`]).
    pub output: String,
    pub seed: u64,
    /// [`columns_arg`]: checked against the dataset's columns.
    pub columns: Option<String>,
    /// [`reward_functions_json`]: written as the training inputs' reward functions file.
    pub reward_functions: Option<String>,
    pub termination_message_path: Option<String>,
}

impl PrepareInvocation {
    pub fn argv(&self) -> Vec<String> {
        Argv::new(&PREPARE)
            .value("--task-type", cli_task_type(self.task_type))
            .value("--dataset", self.dataset.clone())
            .maybe("--synthetic", self.synthetic.clone())
            .value("--output", self.output.clone())
            .value("--seed", self.seed.to_string())
            .maybe("--columns", self.columns.clone())
            .maybe("--reward-functions", self.reward_functions.clone())
            .maybe("--termination-message-path", self.termination_message_path.clone())
            .args
    }
}

/// `synthesize-eval`: a generator model writes the synthetic split from the test split's rows
/// (white paper §3.3), de-duplicated against train and test, into [`HeldOut::generated_dir`].
#[derive(Debug, Clone, PartialEq)]
pub struct SynthesizeInvocation {
    pub task_type: TaskType,
    pub generator: String,
    pub weaker_model: Option<String>,
    pub data: PreparedData,
    /// Where the set goes; [`HeldOut::generated_dir`] of `data` unless mounted elsewhere.
    pub output: String,
    pub columns: Option<String>,
    pub rows: u64,
    pub temperature: f64,
    pub max_new_tokens: u32,
    pub seed: u64,
    pub termination_message_path: Option<String>,
}

impl SynthesizeInvocation {
    pub fn argv(&self) -> Vec<String> {
        Argv::new(&SYNTHESIZE)
            .value("--task-type", cli_task_type(self.task_type))
            .value("--generator", self.generator.clone())
            .maybe("--weaker-model", self.weaker_model.clone())
            .value("--train-data", self.data.training.train(self.task_type))
            .value("--test-data", self.data.heldout.test(self.task_type))
            .maybe("--columns", self.columns.clone())
            .value("--rows", self.rows.to_string())
            .value("--temperature", number_arg(self.temperature))
            .value("--max-new-tokens", self.max_new_tokens.to_string())
            .value("--seed", self.seed.to_string())
            .value("--output", self.output.clone())
            .maybe("--termination-message-path", self.termination_message_path.clone())
            .args
    }

    pub fn env(&self) -> Vec<(String, String)> {
        env(&[("HF_HUB_OFFLINE", "1".to_string()), ("PYTHONUNBUFFERED", "1".to_string())])
    }
}

/// `gradients seal`: copy a finished trainer's model where nobody can write, with its digest.
#[derive(Debug, Clone, PartialEq)]
pub struct SealInvocation {
    pub input: TrainerOutput,
    pub output: SealedSubmission,
    pub limits: crate::seal::Limits,
    pub termination_message_path: Option<String>,
}

impl SealInvocation {
    pub fn argv(&self) -> Vec<String> {
        Argv::new(&SEAL)
            .value("--input", self.input.dir())
            .value("--output", self.output.dir())
            .value("--max-file-bytes", self.limits.max_file_bytes.to_string())
            .value("--max-total-bytes", self.limits.max_total_bytes.to_string())
            .value("--max-files", self.limits.max_files.to_string())
            .maybe("--termination-message-path", self.termination_message_path.clone())
            .args
    }
}

/// `train`: fine-tune `base_model` on the training inputs into `output` within `hours`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainInvocation {
    pub task_type: TaskType,
    pub base_model: String,
    pub inputs: TrainingInputs,
    pub columns: Option<String>,
    pub hours: f64,
    pub output: TrainerOutput,
    pub strategy: Option<String>,
    pub seed: u64,
    /// Successive halving: continue from the trainer output directory of an earlier slice.
    pub resume_from: Option<String>,
}

impl TrainInvocation {
    pub fn argv(&self) -> Vec<String> {
        let rewards = (self.task_type == TaskType::Grpo).then(|| self.inputs.reward_functions());
        Argv::new(&TRAIN)
            .value("--task-type", cli_task_type(self.task_type))
            .value("--base-model", self.base_model.clone())
            .value("--train-data", self.inputs.train(self.task_type))
            .maybe("--columns", self.columns.clone())
            .maybe("--reward-functions", rewards)
            .value("--hours", number_arg(self.hours))
            .value("--output", self.output.dir())
            .maybe("--strategy", self.strategy.clone())
            .value("--seed", self.seed.to_string())
            .maybe("--resume-from", self.resume_from.clone())
            .args
    }

    /// The same facts for trainers that read their environment rather than their arguments.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut vars = env(&[
            ("GRADIENTS_TASK_TYPE", cli_task_type(self.task_type).to_string()),
            ("GRADIENTS_BASE_MODEL", self.base_model.clone()),
            ("GRADIENTS_TRAIN_DATA", self.inputs.train(self.task_type)),
            ("GRADIENTS_HOURS", number_arg(self.hours)),
            ("GRADIENTS_OUTPUT", self.output.dir().to_string()),
            ("PYTHONUNBUFFERED", "1".to_string()),
        ]);
        vars.extend(self.resume_from.iter().map(|dir| ("GRADIENTS_RESUME_FROM".to_string(), dir.clone())));
        vars
    }
}

/// What an evaluation scores.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    /// A trained model directory, with the digest it was sealed with when known.
    Model { dir: String, digest: Option<String> },
    /// The untrained base model itself, as a reference row.
    BaseModel,
}

/// `evaluate`: check a submission, then compute its losses on the held-out data.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalInvocation {
    pub task_type: TaskType,
    pub base_model: String,
    pub subject: Subject,
    pub inputs: TrainingInputs,
    pub heldout: HeldOut,
    pub columns: Option<String>,
    /// `fast` or `paper` (the evaluator's default).
    pub profile: Option<String>,
    pub seed: u64,
    pub termination_message_path: Option<String>,
    /// The task's synthetic set was written by a generator ([`HeldOut::synth_for`]).
    pub generated_synthetic: bool,
}

impl EvalInvocation {
    pub fn argv(&self) -> Vec<String> {
        let (submission, digest) = match &self.subject {
            Subject::Model { dir, digest } => (Some(dir.clone()), digest.clone()),
            Subject::BaseModel => (None, None),
        };
        let rewards = (self.task_type == TaskType::Grpo).then(|| self.inputs.reward_functions());
        Argv::new(&EVALUATE)
            .value("--task-type", cli_task_type(self.task_type))
            .value("--base-model", self.base_model.clone())
            .maybe("--submission", submission)
            .maybe("--submission-digest", digest)
            .switch("--score-base", self.subject == Subject::BaseModel)
            .value("--test-data", self.heldout.test(self.task_type))
            .value("--synth-data", self.heldout.synth_for(self.task_type, self.generated_synthetic))
            .maybe("--columns", self.columns.clone())
            .maybe("--reward-functions", rewards)
            .maybe("--profile", self.profile.clone())
            .value("--seed", self.seed.to_string())
            .maybe("--termination-message-path", self.termination_message_path.clone())
            .args
    }

    pub fn env(&self) -> Vec<(String, String)> {
        env(&[("HF_HUB_OFFLINE", "1".to_string()), ("PYTHONUNBUFFERED", "1".to_string())])
    }
}

/// The contract as data, for the Python package's tests (`trainer-image/workload-contract.json`).
pub fn describe() -> serde_json::Value {
    use serde_json::json;
    let text = TaskType::InstructText;
    let image = TaskType::Image;
    let data = PreparedData::under("DATA");
    let output = TrainerOutput("OUTPUT".to_string());
    let example_train = TrainInvocation {
        task_type: TaskType::Grpo,
        base_model: "BASE".into(),
        inputs: data.training.clone(),
        columns: Some(r#"{"prompt":"question"}"#.into()),
        hours: 1.5,
        output: output.clone(),
        strategy: Some("baseline".into()),
        seed: 7,
        resume_from: None,
    };
    let example_resume = TrainInvocation { resume_from: Some("EARLIER_OUTPUT".into()), ..example_train.clone() };
    let example_eval = EvalInvocation {
        task_type: TaskType::Grpo,
        base_model: "BASE".into(),
        subject: Subject::Model { dir: output.model(), digest: Some(format!("sha256:{}", "0".repeat(64))) },
        inputs: data.training.clone(),
        heldout: data.heldout.clone(),
        columns: Some(r#"{"prompt":"question"}"#.into()),
        profile: Some("fast".into()),
        seed: 7,
        termination_message_path: Some(TERMINATION_MESSAGE_PATH.into()),
        generated_synthetic: false,
    };
    let example_base = EvalInvocation { subject: Subject::BaseModel, ..example_eval.clone() };
    let example_generated = EvalInvocation { generated_synthetic: true, ..example_eval.clone() };
    let example_synthesize = SynthesizeInvocation {
        task_type: TaskType::Dpo,
        generator: "GENERATOR".into(),
        weaker_model: Some("WEAKER".into()),
        data: data.clone(),
        output: data.heldout.generated_dir(),
        columns: Some(r#"{"prompt":"question"}"#.into()),
        rows: 20,
        temperature: 0.7,
        max_new_tokens: 64,
        seed: 7,
        termination_message_path: Some(TERMINATION_MESSAGE_PATH.into()),
    };
    let task_types = [TaskType::InstructText, TaskType::Dpo, TaskType::Grpo, TaskType::Image].map(cli_task_type);
    json!({
        "version": 1,
        "generated_by": "gradients contract (src/workloads/contract.rs); scripts/generate rewrites this file",
        "programs": { "trainer": TRAINER_PROGRAM, "operator": [OPERATOR_PROGRAM] },
        "task_types": task_types,
        "termination_message_path": TERMINATION_MESSAGE_PATH,
        "termination_message_limit": crate::tournament::RESULT_LIMIT,
        "layout": {
            "training_dir": TRAINING_DIR,
            "heldout_dir": HELDOUT_DIR,
            "reward_functions_file": REWARD_FUNCTIONS_FILE,
            "model_dir": MODEL_DIR,
            "manifest_file": MANIFEST_FILE,
            "training_summary_file": TRAINING_SUMMARY_FILE,
            "generated_dir": GENERATED_DIR,
            "generated_file": GENERATED_FILE,
            "text": {"train": data.training.train(text), "test": data.heldout.test(text), "synth": data.heldout.synth(text)},
            "image": {"train": data.training.train(image), "test": data.heldout.test(image), "synth": data.heldout.synth(image)},
        },
        "transfers": transfers_example(),
        "commands": COMMANDS.iter().map(|c| (c.subcommand.to_string(), json!(c))).collect::<serde_json::Map<_, _>>(),
        "examples": {
            "train": example_train.argv(),
            "train_env": example_train.env().into_iter().collect::<std::collections::BTreeMap<_, _>>(),
            "train_resume": example_resume.argv(),
            "evaluate": example_eval.argv(),
            "evaluate_base": example_base.argv(),
            "evaluate_generated": example_generated.argv(),
            "synthesize": example_synthesize.argv(),
        },
    })
}

/// How a workload on `s3://` artifacts gets its objects (`crate::storage::transfers`): the
/// variable, the staging directory its paths are in, and an example document.
fn transfers_example() -> serde_json::Value {
    use crate::storage::transfers::{Archive, Object, STAGING_DIR, TRANSFERS_ENV, Transfers};
    let url = |key: &str| format!("https://s3.example/bucket/{key}?X-Amz-Signature=0");
    let example = Transfers {
        version: 1,
        fetch: vec![Object { path: format!("{STAGING_DIR}/base-model/config.json"), url: url("models/m/config.json") }],
        fetch_archives: vec![Archive { dir: format!("{STAGING_DIR}/inputs"), url: url("t/data/training.tar") }],
        store_archives: vec![Archive { dir: format!("{STAGING_DIR}/output"), url: url("t/models/a.tar") }],
    };
    serde_json::json!({"env": TRANSFERS_ENV, "staging_dir": STAGING_DIR, "example": example})
}

/// Checks an argument vector against a command's options: every option declared, every
/// required one present, values where values belong. Used on everything the builders render.
#[cfg(test)]
pub(crate) fn check_argv(spec: &CommandSpec, argv: &[String]) -> Result<(), String> {
    let mut rest = argv.iter();
    if rest.next().map(String::as_str) != Some(spec.subcommand) {
        return Err(format!("{argv:?} does not start with {}", spec.subcommand));
    }
    let mut seen = Vec::new();
    while let Some(arg) = rest.next() {
        let flag = spec.flags.iter().find(|f| f.name == arg).ok_or_else(|| format!("{arg} is undeclared"))?;
        if flag.value && rest.next().is_none_or(|v| v.starts_with("--")) {
            return Err(format!("{arg} has no value"));
        }
        if seen.contains(&flag.name) {
            return Err(format!("{arg} is given twice"));
        }
        seen.push(flag.name);
    }
    match spec.flags.iter().find(|f| f.required && !seen.contains(&f.name)) {
        Some(missing) => Err(format!("{} is required", missing.name)),
        None => Ok(()),
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_invocations_follow_their_specs() {
        let description = describe();
        let examples = &description["examples"];
        let strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
        };
        check_argv(&TRAIN, &strings(&examples["train"])).unwrap();
        check_argv(&EVALUATE, &strings(&examples["evaluate"])).unwrap();
        check_argv(&EVALUATE, &strings(&examples["evaluate_base"])).unwrap();
        let train = strings(&examples["train"]);
        assert!(
            train.windows(2).any(|w| w[0] == "--reward-functions" && w[1] == "DATA/training/reward_functions.json")
        );
        assert!(train.windows(2).any(|w| w[0] == "--hours" && w[1] == "1.5"));
        let evaluate = strings(&examples["evaluate"]);
        assert!(evaluate.windows(2).any(|w| w[0] == "--submission" && w[1] == "OUTPUT/model"));
        assert!(evaluate.windows(2).any(|w| w[0] == "--test-data" && w[1] == "DATA/heldout/test.jsonl"));
        assert!(strings(&examples["evaluate_base"]).contains(&"--score-base".to_string()));
        assert!(check_argv(&TRAIN, &["train".into(), "--hours".into()]).is_err());
        assert!(check_argv(&TRAIN, &["train".into(), "--deadline".into(), "x".into()]).is_err());
    }

    #[test]
    fn the_committed_description_is_current() {
        let path = crate::checkout().join("trainer-image/workload-contract.json");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        let current = serde_json::to_string_pretty(&describe()).unwrap() + "\n";
        assert!(committed == current, "{} is stale: run scripts/generate", path.display());
    }

    #[test]
    fn budgets_are_capped_by_the_deadline() {
        let now: DateTime<Utc> = "2026-11-30T12:00:00Z".parse().unwrap();
        assert_eq!(budget_hours(2.0, None, now), 2.0);
        assert_eq!(budget_hours(2.0, Some(now + chrono::Duration::minutes(30)), now), 0.5);
        assert_eq!(budget_hours(2.0, Some(now - chrono::Duration::minutes(30)), now), 60.0 / 3600.0);
        assert_eq!(number_arg(2.0), "2");
        assert_eq!(number_arg(0.25), "0.25");
    }
}
