//! The `gradients` command line: one binary, one subcommand per job.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use gradients::audit;
use gradients::mechanism::MechanismConfig;

#[derive(Parser)]
#[command(name = "gradients", version, about = "Fine-tuning tournaments, on Kubernetes or on one machine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Recompute task scores and weights from exported evaluation records (JSON on stdout).
    Score {
        /// Records file in the `gradients score` input format; `-` reads stdin.
        #[arg(long, short)]
        input: PathBuf,
        /// Published weights to check, as a JSON object `{"miner": weight_u16}`; exit 1 on mismatch.
        #[arg(long)]
        expect: Option<PathBuf>,
        /// `json` (every task's scores and the standings) or `table` (the standings, for people).
        #[arg(long, value_enum, default_value = "json")]
        output: ScoreOutput,
    },
    /// Run the controllers (in a cluster, or from outside one with KUBECONFIG).
    Operator(gradients::operator::Settings),
    /// On a GPU node: check the GPUs against the node's labels and serve per-GPU metrics.
    GpuAgent(gradients::gpu::agent::AgentArgs),
    /// Run a whole tournament on this machine from a task file (the embedded default).
    Run(gradients::local::cli::RunArgs),
    /// Write RUN_DIR/report.html: loss curves, time budget, leaderboard, weights, store history.
    Report(gradients::local::cli::ReportArgs),
    /// Split a dataset into train/test/synthetic (the operator's preparation Job runs this).
    Prepare {
        /// instruct, dpo, grpo or image.
        #[arg(long)]
        task_type: String,
        #[arg(long)]
        dataset: PathBuf,
        #[arg(long)]
        synthetic: Option<PathBuf>,
        /// Folder the splits are written into.
        #[arg(long)]
        output: PathBuf,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Column mapping (JSON, as the trainer takes it): checked against the dataset's columns;
        /// the splits keep the rows as they are, trainers map columns.
        #[arg(long)]
        columns: Option<String>,
        /// GRPO reward functions as JSON, written as `training/reward_functions.json`.
        #[arg(long)]
        reward_functions: Option<String>,
        /// Also write the split sizes here (a container's termination message file).
        #[arg(long)]
        termination_message_path: Option<PathBuf>,
    },
    /// Seal a trainer's output: copy INPUT/model/ into OUTPUT/model/ (regular files only, within
    /// the caps) and write OUTPUT/manifest.json with the tree digest (the operator's seal Job).
    /// A refused submission exits 0 with `"ok": false`; exit 1 is a failure of the seal itself.
    Seal {
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        output: PathBuf,
        #[arg(long, default_value_t = gradients::seal::Limits::default().max_file_bytes)]
        max_file_bytes: u64,
        #[arg(long, default_value_t = gradients::seal::Limits::default().max_total_bytes)]
        max_total_bytes: u64,
        #[arg(long, default_value_t = gradients::seal::Limits::default().max_files)]
        max_files: u64,
        /// Also write the report here (a container's termination message file).
        #[arg(long)]
        termination_message_path: Option<PathBuf>,
    },
    /// Create a workload's writable directories below ROOT (its pod's init container): left to
    /// the kubelet, a missing subPath would belong to root.
    Workdirs {
        #[arg(long)]
        root: PathBuf,
        /// Relative paths below ROOT.
        dirs: Vec<String>,
    },
    /// Wait until this pod's NetworkPolicy is in force: until the API server's Service no longer
    /// accepts a connection from it (a trainer pod's first init container, with
    /// `workloads.awaitIsolation`). Exit 1 when it still does after the limit.
    AwaitIsolation {
        #[arg(long, default_value_t = 120)]
        timeout_seconds: u64,
    },
    /// Print the workload contract (commands, options, layout) as JSON for the Python package.
    Contract,
    /// Print the Task of one draw of a TaskSource file (what the operator would create for it).
    Synthesize {
        /// A `TaskSource` manifest: catalogue, mix, task template.
        source: PathBuf,
        /// Seed of the draws (default: the file's `spec.seed`).
        #[arg(long)]
        seed: Option<u64>,
        /// Which draw: the operator creates draw 0, 1, 2, … as `NAME-INDEX`.
        #[arg(long, default_value_t = 0)]
        index: u64,
    },
    /// Weights for the Bittensor chain (`weights push --endpoint` signs and submits the call, `--dry-run` prints it).
    Weights(gradients::chain::cli::WeightsArgs),
    /// Write the CustomResourceDefinitions as YAML, one file per kind, into a folder.
    Crdgen {
        /// Output folder; the files are `<plural>.gradients.io.yaml`.
        #[arg(long, default_value = "crds")]
        out: PathBuf,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ScoreOutput {
    Json,
    Table,
}

/// Exit code for input the command cannot use.
const EXIT_BAD_INPUT: u8 = 2;

/// jemalloc, not glibc's malloc: glibc had not given back the room its worker-thread arenas freed
/// (at 1,000 Tasks the operator's arenas held 416 MB for 282 MB in use; the two worker arenas
/// held 154 MB for 21 MB), and it is the peak RSS that a memory limit meets. A heap profiler that
/// hooks malloc (heaptrack) needs the build without it: `--no-default-features`.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Score { input, expect, output } => score(&input, expect.as_deref(), output),
        Command::Operator(settings) => operator(settings),
        Command::GpuAgent(args) => gpu_agent(args),
        Command::Run(args) => gradients::local::cli::main(args),
        Command::Report(args) => gradients::local::cli::report(args),
        Command::Prepare {
            task_type,
            dataset,
            synthetic,
            output,
            seed,
            columns,
            reward_functions,
            termination_message_path,
        } => {
            let options = PrepareOptions { task_type, dataset, synthetic, output, seed, columns, reward_functions };
            let limits = gradients::seal::Limits::default();
            let work = || prepare(options, termination_message_path);
            gradients::storage::workload::around(&limits, work, |code| *code == ExitCode::SUCCESS)
                .unwrap_or_else(|e| fail(&e.to_string(), 1))
        }
        Command::Seal { input, output, max_file_bytes, max_total_bytes, max_files, termination_message_path } => {
            let limits = gradients::seal::Limits { max_file_bytes, max_total_bytes, max_files };
            seal(&input, &output, &limits, termination_message_path.as_deref())
        }
        Command::Workdirs { root, dirs } => match gradients::workdirs::create(&root, &dirs) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e, 1),
        },
        Command::AwaitIsolation { timeout_seconds } => {
            let limit = std::time::Duration::from_secs(timeout_seconds);
            let waited = gradients::isolation::api_server_from_env().and_then(|target| {
                gradients::isolation::await_isolation(target, limit, std::time::Duration::from_millis(200))
                    .map(|(waited, why)| format!("isolated after {} ms: {target}: {why}", waited.as_millis()))
            });
            match waited {
                Ok(line) => {
                    println!("{line}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e, 1),
            }
        }
        Command::Contract => {
            let contract = gradients::workloads::contract::describe();
            println!("{}", serde_json::to_string_pretty(&contract).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Command::Synthesize { source, seed, index } => synthesize(&source, seed, index),
        Command::Weights(args) => gradients::chain::cli::main(args),
        Command::Crdgen { out } => match gradients::crdgen::write_all(&out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&format!("{}: {e}", out.display()), 1),
        },
    }
}

/// Logs to stderr, filtered by `RUST_LOG`, as text or, with `GRADIENTS_LOG_FORMAT=json`, one
/// JSON object per line (the chart's `logFormat`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,kube=warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match std::env::var("GRADIENTS_LOG_FORMAT").as_deref() {
        Ok("json") => builder.json().init(),
        Ok("text") | Err(_) => builder.init(),
        Ok(other) => {
            builder.init();
            tracing::warn!(format = other, "GRADIENTS_LOG_FORMAT is neither text nor json: logging text");
        }
    }
}

fn operator(settings: gradients::operator::Settings) -> ExitCode {
    init_logging();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the runtime: {e}"), 1),
    };
    let result = runtime.block_on(gradients::operator::run(settings));
    // What the controllers left running (kube-rs's watches, a reconcile cut short at the end of
    // the grace period) must not hold up the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("{e:#}"), 1),
    }
}

fn gpu_agent(args: gradients::gpu::agent::AgentArgs) -> ExitCode {
    init_logging();
    match tokio::runtime::Runtime::new().map(|runtime| runtime.block_on(gradients::gpu::agent::run(args))) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => fail(&e.to_string(), 1),
        Err(e) => fail(&format!("cannot start the runtime: {e}"), 1),
    }
}

struct PrepareOptions {
    task_type: String,
    dataset: PathBuf,
    synthetic: Option<PathBuf>,
    output: PathBuf,
    seed: u64,
    columns: Option<String>,
    reward_functions: Option<String>,
}

fn prepare(options: PrepareOptions, termination_message_path: Option<PathBuf>) -> ExitCode {
    use gradients::dataset::prepare as split;
    let task_type = match gradients::workloads::contract::parse_cli_task_type(&options.task_type) {
        Ok(task_type) => task_type,
        Err(e) => return fail(&format!("--task-type: {e}"), EXIT_BAD_INPUT),
    };
    let args = split::PrepareArgs {
        task_type,
        dataset: options.dataset,
        synthetic: options.synthetic,
        output: options.output,
        seed: options.seed,
        columns: options.columns,
        reward_functions: options.reward_functions,
    };
    match split::run(&MechanismConfig::default(), &args) {
        Ok(facts) => {
            let json = serde_json::to_string(&facts).unwrap_or_default();
            println!("{json}");
            if let Some(path) = termination_message_path
                && let Err(e) = std::fs::write(&path, &json)
            {
                return fail(&format!("{}: {e}", path.display()), 1);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            // The operator shows this as the reason the preparation failed.
            if let Some(path) = termination_message_path {
                let _ = std::fs::write(&path, &e);
            }
            fail(&e, 1)
        }
    }
}

fn seal(
    input: &std::path::Path,
    output: &std::path::Path,
    limits: &gradients::seal::Limits,
    message: Option<&std::path::Path>,
) -> ExitCode {
    use gradients::seal::{SealError, SealReport};
    let (report, code) = match gradients::storage::workload::seal(input, output, limits) {
        Ok(manifest) => {
            let bytes = manifest.files.iter().map(|f| f.size).sum();
            (
                SealReport {
                    ok: true,
                    files: manifest.files.len() as u64,
                    bytes,
                    digest: Some(manifest.digest),
                    failure: None,
                    training: gradients::seal::trainer_summary(input),
                },
                0,
            )
        }
        Err(SealError::Refused(why)) => (SealReport { failure: Some(why), ..SealReport::default() }, 0),
        Err(e) => (SealReport { failure: Some(e.to_string()), ..SealReport::default() }, 1),
    };
    let json = serde_json::to_string(&report).unwrap_or_default();
    println!("{json}");
    if let Some(path) = message
        && let Err(e) = std::fs::write(path, &json)
    {
        return fail(&format!("{}: {e}", path.display()), 1);
    }
    if code == 0 { ExitCode::SUCCESS } else { fail(report.failure.as_deref().unwrap_or("seal failed"), code) }
}

fn synthesize(source: &std::path::Path, seed: Option<u64>, index: u64) -> ExitCode {
    let task = match gradients::synthetic::file::synthesize(source, seed, index) {
        Ok(task) => task,
        Err(e) => return fail(&e.to_string(), EXIT_BAD_INPUT),
    };
    match serde_norway::to_string(&task) {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&format!("cannot encode the task: {e}"), 1),
    }
}

fn score(input: &std::path::Path, expect: Option<&std::path::Path>, output: ScoreOutput) -> ExitCode {
    let name = input.display().to_string();
    let text = match read_input(input) {
        Ok(text) => text,
        Err(e) => return fail(&format!("{name}: {e}"), EXIT_BAD_INPUT),
    };
    let report = match audit::score_document(&MechanismConfig::default(), &text) {
        Ok(report) => report,
        Err(e) => return fail(&format!("{name}: {e}"), EXIT_BAD_INPUT),
    };
    let problems = match expect {
        None => Vec::new(),
        Some(path) => match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| format!("expected {{\"miner\": weight_u16}}: {e}")))
        {
            Ok(expected) => audit::check_weights(&report, &expected),
            Err(e) => return fail(&format!("{}: {e}", path.display()), EXIT_BAD_INPUT),
        },
    };
    let written = {
        let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
        let written = match output {
            ScoreOutput::Json => serde_json::to_writer_pretty(&mut out, &report).map_err(std::io::Error::from),
            ScoreOutput::Table => out.write_all(audit::standings_table(&report).as_bytes()),
        };
        written.and_then(|()| writeln!(out)).and_then(|()| out.flush())
    };
    if let Err(e) = written {
        return fail(&format!("cannot write the report: {e}"), 1);
    }
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        fail(&format!("published weights differ from the recomputed ones:\n  {}", problems.join("\n  ")), 1)
    }
}

fn read_input(path: &std::path::Path) -> std::io::Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        Ok(text)
    } else {
        std::fs::read_to_string(path)
    }
}

fn fail(message: &str, code: u8) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }

    /// The operator image's subcommands take exactly the options the workload contract renders.
    #[test]
    fn prepare_and_seal_match_the_workload_contract() {
        use clap::CommandFactory;
        use gradients::workloads::contract::{PREPARE, SEAL};
        let cli = super::Cli::command();
        for spec in [&PREPARE, &SEAL] {
            let command = cli.find_subcommand(spec.subcommand).expect(spec.subcommand);
            let options: Vec<(String, bool, bool)> = command
                .get_arguments()
                .filter_map(|a| {
                    a.get_long().map(|l| (format!("--{l}"), a.is_required_set(), a.get_action().takes_values()))
                })
                .filter(|(name, ..)| name != "--help")
                .collect();
            let declared: Vec<(String, bool, bool)> =
                spec.flags.iter().map(|f| (f.name.to_string(), f.required, f.value)).collect();
            assert_eq!(options, declared, "`gradients {}` and the contract differ", spec.subcommand);
        }
    }
}
