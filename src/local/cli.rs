//! `gradients run`: its arguments and what it prints.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::executor::{Options, RunError, run};
use super::page;
use super::report::table;
use super::rundir::RunDir;
use crate::tournament::{Phase, TournamentConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Profile {
    Fast,
    Paper,
    /// What the operator's evaluator runs (the public evaluator's per-model settings).
    Production,
}

/// Run a whole tournament on this machine from a task file (a `Task` manifest). Re-running
/// the same command after an interruption resumes it; after a finished run it starts another.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The task file (`kind: Task`); relative paths in it are relative to the file.
    pub task: PathBuf,
    /// `table` for people (stdout), `json` for programs (the same report as JSON on stdout).
    #[arg(long, value_enum, default_value = "table")]
    pub output: Output,
    /// Trainings and evaluations at once (default: the number of cores, at most 4).
    #[arg(long)]
    pub parallel: Option<usize>,
    /// Where the leaderboard store and the run directories live.
    #[arg(long, env = "GRADIENTS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The run directory (default: DATA_DIR/runs/NAME, NAME-2, …).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Python with the `gradients_trainer` package: the last line `trainer-image/setup-env` prints.
    #[arg(long, env = "GRADIENTS_PYTHON", default_value = "python3")]
    pub python: String,
    /// The evaluator's protocol: `fast` (CPU-friendly), `paper` (the white paper's) or
    /// `production` (the operator's; see trainer-image/README.md).
    #[arg(long, value_enum, default_value = "fast")]
    pub eval_profile: Profile,
    /// Seconds a training may run past its deadline before it is killed.
    #[arg(long, default_value_t = 60)]
    pub grace_seconds: u64,
    /// Seconds an evaluation may run before it is killed and the submission failed.
    #[arg(long, default_value_t = 1800)]
    pub eval_timeout_seconds: u64,
    /// No progress display on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// Run the miners' inline `command`s. They are trusted code: unsandboxed, as you, with
    /// access to the held-out data and the other workloads' files. Without this flag a task
    /// file with an inline command is refused.
    #[arg(long)]
    pub trust_local_commands: bool,
    /// Recorded NVML readings (JSON, as tests/fixtures/gpu/) in place of the machine's NVML:
    /// a stand-in that lets tests on machines without a GPU exercise the GPU assignment.
    #[arg(long, hide = true)]
    pub recorded_nvml: Option<PathBuf>,
}

/// `$GRADIENTS_CACHE/data`, else `~/.cache/gradients/data`.
pub fn default_data_dir() -> PathBuf {
    let cache = std::env::var_os("GRADIENTS_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
        home.join(".cache").join("gradients")
    });
    cache.join("data")
}

/// Exit codes: 0 the task succeeded; 1 it failed (the report says why) or the run broke;
/// 2 the task file is invalid or the environment cannot run it (nothing is recorded).
pub fn main(args: RunArgs) -> ExitCode {
    let mut config = TournamentConfig::default();
    config.lifecycle.deadline_grace_s = args.grace_seconds;
    config.lifecycle.evaluation_timeout_s = args.eval_timeout_seconds;
    // Local work waits in the executor's queue, never for a scheduler.
    config.lifecycle.pending_timeout_s = None;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let options = Options {
        task_file: args.task.clone(),
        data_dir: args.data_dir.clone().unwrap_or_else(default_data_dir),
        run_dir: args.run_dir.clone(),
        parallel: args.parallel.unwrap_or(cores.min(4)).max(1),
        python: args.python.clone(),
        profile: match args.eval_profile {
            Profile::Fast => "fast".into(),
            Profile::Paper => "paper".into(),
            Profile::Production => "production".into(),
        },
        config,
        progress: !args.quiet,
        trust_local_commands: args.trust_local_commands,
        recorded_nvml: args.recorded_nvml.clone(),
    };
    // Orphans of the workloads come back to this process, to be killed (see process.rs).
    if let Err(e) = super::process::become_subreaper() {
        eprintln!("error: cannot become the reaper of the workloads' processes: {e}");
        return ExitCode::FAILURE;
    }
    match run(&options) {
        Ok(report) => {
            match args.output {
                Output::Table => print!("{}", table(&report, report.task_type != "Image")),
                Output::Json => match serde_json::to_string_pretty(&report) {
                    Ok(json) => println!("{json}"),
                    Err(e) => {
                        eprintln!("error: cannot encode the report: {e}");
                        return ExitCode::FAILURE;
                    }
                },
            }
            if report.phase == Phase::Succeeded { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(e @ (RunError::TaskFile(_) | RunError::Environment(_))) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Write a run's HTML report (`gradients run` writes it at the end of every run; this
/// rewrites it, e.g. for a run that is still going or after more runs changed the store).
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The run directory (`DATA_DIR/runs/NAME`, printed by `gradients run`).
    pub run_dir: PathBuf,
    /// The data directory whose leaderboard store the page shows (default: the one the run
    /// directory is in, else GRADIENTS_DATA_DIR or the default data directory).
    #[arg(long, env = "GRADIENTS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Exit codes: 0 written (its path on stdout); 2 RUN_DIR is not a run directory; 1 otherwise.
pub fn report(args: ReportArgs) -> ExitCode {
    let data_dir = args.data_dir.or_else(|| page::data_dir_of(&args.run_dir)).unwrap_or_else(default_data_dir);
    match page::write(&RunDir::new(args.run_dir), &data_dir, &TournamentConfig::default()) {
        Ok(path) => {
            println!("{}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(if e.kind() == std::io::ErrorKind::NotFound { 2 } else { 1 })
        }
    }
}
