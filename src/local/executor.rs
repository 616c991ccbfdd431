//! The local executor: observes its child processes and run directory, calls
//! [`crate::tournament::decide`], persists the state, and applies the actions.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};

use super::devices::{self, LocalGpus};
use super::fsio;
use super::manifest::{self, TaskFileError};
use super::page;
use super::preflight::{self, EnvironmentError};
use super::process;
use super::progress::{Live, Progress};
use super::report::{self, RunReport};
use super::rundir::{self, ResultFile, RunDir};
use super::store::Store;
use super::validate::{self, ValidTask};
use super::workload::{self, Contract};
use crate::dataset;
use crate::mechanism::scoring::average_score_today;
use crate::seal;
use crate::tournament::{
    Action, Observation, PoolMiner, SealSummary, SealedModel, TaskState, TournamentConfig, WorkKind, WorkOutput,
    WorkloadId, WorkloadState, decide,
};
use crate::workloads::contract::{PreparedData, Subject, reward_functions_json};

/// How `gradients run` was asked to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub task_file: PathBuf,
    pub data_dir: PathBuf,
    pub run_dir: Option<PathBuf>,
    /// Workloads at once.
    pub parallel: usize,
    /// The Python interpreter with `gradients_trainer` (what `trainer-image/setup-env` prints).
    pub python: String,
    /// Evaluation protocol: `fast` or `paper`.
    pub profile: String,
    pub config: TournamentConfig,
    /// Draw the live per-miner display on stderr.
    pub progress: bool,
    /// Run inline miner commands (trusted code); refused otherwise.
    pub trust_local_commands: bool,
    /// Recorded NVML readings in place of NVML (the stand-in for tests on machines without a GPU).
    pub recorded_nvml: Option<PathBuf>,
}

/// Why a run could not be carried out (a miner's failure is not one: it is in the report).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    TaskFile(#[from] TaskFileError),
    /// The machine cannot run the task (Python, trainer package, base model, GPUs): found
    /// before any workload started, or when the package vanished mid-run. Nothing is recorded.
    #[error(transparent)]
    Environment(#[from] EnvironmentError),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}")]
    Conflict(String),
}

fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io { path: path.display().to_string(), source }
}

enum Launch {
    Train {
        strategy: String,
        command: Option<Vec<String>>,
        hours: f64,
        deadline: Option<DateTime<Utc>>,
        /// Successive halving: the earlier training whose output this one continues from.
        resume_from: Option<WorkloadId>,
    },
    Evaluate {
        submission: Option<SealedModel>,
    },
    Synthesize {
        seed: u64,
        rows: u64,
    },
}

struct Running {
    id: WorkloadId,
    child: Child,
    started_at: DateTime<Utc>,
    /// Run with the validator's interpreter (the reference trainer or the evaluator), not a
    /// miner's own command.
    by_validator: bool,
}

/// Validates the task file and the environment, then runs (or resumes) the tournament to its end.
pub fn run(options: &Options) -> Result<RunReport, RunError> {
    let valid = validate::validate(manifest::load(&options.task_file)?)?;
    validate::check_inline_commands(&valid.file, options.trust_local_commands)?;
    // Workloads run in their own directories: every path they are given is absolute.
    let absolute = |p: &Path| std::path::absolute(p).map_err(io_err(p));
    let options = &Options {
        python: preflight::resolve_program(&options.python),
        data_dir: absolute(&options.data_dir)?,
        run_dir: options.run_dir.as_deref().map(absolute).transpose()?,
        ..options.clone()
    };
    preflight::check(&options.python, &valid.file.spec, preflight::requested_gpus())?;
    let cuda_visible = std::env::var("CUDA_VISIBLE_DEVICES").ok();
    let gpus = LocalGpus::discover(options.recorded_nvml.as_deref(), cuda_visible.as_deref()).map_err(|e| {
        EnvironmentError { what: "the GPUs of this machine cannot be read".into(), cause: e.to_string() }
    })?;
    let run = rundir::choose(&options.data_dir, &valid.file.name, options.run_dir.as_deref())
        .map_err(io_err(&options.data_dir))?;
    Executor::open(options, valid, run, gpus)?.drive()
}

struct Executor<'a> {
    options: &'a Options,
    task: ValidTask,
    run: RunDir,
    id: String,
    store: Store,
    contract: Contract,
    pool: Vec<PoolMiner>,
    state: TaskState,
    results: BTreeMap<WorkloadId, WorkloadState>,
    queue: VecDeque<(WorkloadId, Launch)>,
    running: Vec<Running>,
    recorded: bool,
    progress: Progress,
    gpus: LocalGpus,
}

impl<'a> Executor<'a> {
    fn open(options: &'a Options, task: ValidTask, run: RunDir, gpus: LocalGpus) -> Result<Self, RunError> {
        let root = run.root.clone();
        std::fs::create_dir_all(&root).map_err(io_err(&root))?;
        let spec_json = serde_json::to_value(&task.file.spec).map_err(|e| RunError::Conflict(e.to_string()))?;
        match fsio::read_json::<serde_json::Value>(&run.spec()).map_err(io_err(&run.spec()))? {
            Some(stored) if stored != spec_json => {
                return Err(RunError::Conflict(format!(
                    "{} holds a run of a different task (its spec.json differs from {}); pass another --run-dir",
                    root.display(),
                    task.file.path.display()
                )));
            }
            Some(_) => {}
            None => {
                fsio::write_atomic(&run.task_copy(), task.file.text.as_bytes()).map_err(io_err(&run.task_copy()))?;
                fsio::write_json(&run.spec(), &spec_json).map_err(io_err(&run.spec()))?;
            }
        }
        let store = Store::new(&options.data_dir);
        let history = store.load().map_err(io_err(store.path()))?;
        let quality = average_score_today(&options.config.mechanism, &history, Utc::now());
        let pool = task
            .file
            .spec
            .miners
            .iter()
            .map(|m| PoolMiner {
                name: m.name.clone(),
                strategy: Some(m.strategy.clone()),
                average_quality_today: quality.get(&m.name).copied(),
            })
            .collect();
        let id = run.task_id();
        let recorded = history.iter().any(|t| t.id == id);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let parallel = options.parallel.max(1);
        let contract = Contract {
            python: options.python.clone(),
            spec: task.file.spec.clone(),
            data: PreparedData::under(&run.data().to_string_lossy()),
            seed: task.file.spec.seed.unwrap_or(options.config.mechanism.split_seed),
            profile: options.profile.clone(),
            threads: (cores / parallel).max(1),
        };
        let state = run.load_state().map_err(io_err(&run.state()))?.unwrap_or_default();
        let mut executor = Executor {
            options,
            progress: Progress::new(options.progress, &run.root),
            task,
            run,
            id,
            store,
            contract,
            pool,
            state,
            results: BTreeMap::new(),
            queue: VecDeque::new(),
            running: Vec::new(),
            recorded,
            gpus,
        };
        executor.results = executor.run.recover();
        if !executor.gpus.devices().is_empty() {
            let names: Vec<String> =
                executor.gpus.devices().iter().map(|d| format!("{} {}", d.index, d.name)).collect();
            let message = format!("{} GPU(s), one set per workload: {}", names.len(), names.join(", "));
            executor.progress.event("Gpus", &message);
        }
        Ok(executor)
    }

    fn drive(mut self) -> Result<RunReport, RunError> {
        loop {
            if let Err(e) = self.reap() {
                self.kill_all();
                return Err(e);
            }
            self.sweep();
            self.gpus.sample();
            self.launch()?;
            let now = Utc::now();
            let observation = self.observe(now);
            let decision = decide(&self.id, &self.task.file.spec, &self.state, &observation, &self.options.config);
            if decision.state != self.state {
                fsio::write_json(&self.run.state(), &decision.state).map_err(io_err(&self.run.state()))?;
                self.state = decision.state;
            }
            for action in decision.actions {
                self.apply(action, now)?;
            }
            self.progress.draw(&self.state, &self.live(now), now);
            if self.state.phase.is_terminal() {
                break;
            }
            std::thread::sleep(StdDuration::from_millis(200));
        }
        self.kill_all();
        // A run killed between saving its final state and writing the weights writes them now.
        if self.state.finished_at.is_some() && !self.run.weights().exists() && self.recorded {
            self.emit_weights()?;
        }
        self.progress.finish();
        let weights = fsio::read_json(&self.run.weights()).map_err(io_err(&self.run.weights()))?;
        let report = report::build(
            &self.id,
            &self.task.file.spec,
            &self.state,
            weights.as_ref(),
            &self.run.root,
            &self.options.config,
            devices::collect(&self.run.work_root()),
        );
        fsio::write_json(&self.run.report(), &report).map_err(io_err(&self.run.report()))?;
        // The page is for people: a failure to draw it is reported, the run's result stands.
        match page::write(&self.run, &self.options.data_dir, &self.options.config) {
            Ok(path) if self.options.progress => eprintln!("report: {}", path.display()),
            Ok(_) => {}
            Err(e) => eprintln!("warning: cannot write {}: {e}", page::path(&self.run).display()),
        }
        Ok(report)
    }

    /// Kills every running workload and whatever they left behind.
    fn kill_all(&mut self) {
        for running in &mut self.running {
            process::kill_group(running.child.id());
            let _ = running.child.wait();
        }
        process::sweep_strays(&[]);
    }

    fn observe(&self, now: DateTime<Utc>) -> Observation {
        let mut observation = Observation::new(now);
        observation.pool = self.pool.clone();
        observation.recorded = self.recorded;
        observation.workloads = self.results.clone();
        for (id, _) in &self.queue {
            observation.workloads.insert(id.clone(), WorkloadState::Pending { since: None });
        }
        for running in &self.running {
            observation.workloads.insert(running.id.clone(), WorkloadState::Running { started_at: running.started_at });
        }
        observation
    }

    fn live(&self, now: DateTime<Utc>) -> Live {
        let mut live = Live::default();
        for running in &self.running {
            let elapsed = (now - running.started_at).num_milliseconds() as f64 / 1000.0;
            // Only the end matters: the latest progress line.
            let stdout = fsio::tail(&self.run.work(&running.id).join("stdout.log"), 20, 8192);
            live.running.insert(running.id.clone(), (elapsed, workload::latest_progress(&stdout)));
        }
        live.queued = self.queue.iter().map(|(id, _)| id.clone()).collect();
        live
    }

    fn is_known(&self, id: &WorkloadId) -> bool {
        self.results.contains_key(id)
            || self.queue.iter().any(|(q, _)| q == id)
            || self.running.iter().any(|r| &r.id == id)
    }

    fn apply(&mut self, action: Action, now: DateTime<Utc>) -> Result<(), RunError> {
        match action {
            Action::PrepareDataset { id, seed } => self.prepare(id, seed, now),
            Action::GenerateSyntheticSet { id, seed, rows } => {
                if !self.is_known(&id) {
                    self.queue.push_back((id, Launch::Synthesize { seed, rows }));
                }
                Ok(())
            }
            Action::StartTraining { id, entrant, strategy, hours, deadline, resume_from } => {
                if !self.is_known(&id) {
                    let miner = self.task.file.spec.miners.iter().find(|m| m.name == entrant);
                    let command = miner.and_then(|m| m.command.clone());
                    let strategy = strategy.unwrap_or_else(|| "baseline".into());
                    self.queue.push_back((id, Launch::Train { strategy, command, hours, deadline, resume_from }));
                }
                Ok(())
            }
            Action::StartSeal { id, training, .. } => self.seal(id, &training, now),
            Action::StartEvaluation { id, submission, .. } => {
                if !self.is_known(&id) {
                    self.queue.push_back((id, Launch::Evaluate { submission }));
                }
                Ok(())
            }
            Action::StopWorkload { id, reason } => self.stop(&id, reason, now),
            Action::RecordResults { record } => {
                let keep = self.options.config.mechanism.horizon_days();
                self.store.upsert(&record, keep).map_err(io_err(self.store.path()))?;
                self.recorded = true;
                Ok(())
            }
            Action::EmitWeights => self.emit_weights(),
            Action::Notify { reason, message } => {
                self.progress.event(&reason, &message);
                Ok(())
            }
        }
    }

    /// Splits the dataset in-process: quick, and deterministic for the seed.
    fn prepare(&mut self, id: WorkloadId, seed: u64, now: DateTime<Utc>) -> Result<(), RunError> {
        if self.results.contains_key(&id) {
            return Ok(());
        }
        let data = self.run.data();
        let spec = &self.task.file.spec;
        let rewards = (!spec.reward_functions.is_empty()).then(|| reward_functions_json(&spec.reward_functions));
        let prepared = dataset::prepare(
            &self.options.config.mechanism,
            spec.task_type,
            &self.task.dataset,
            self.task.synthetic.as_ref(),
            seed,
            rewards.as_deref(),
            &self.contract.data,
        );
        let state = match prepared {
            Ok(facts) => WorkloadState::Succeeded {
                started_at: now,
                finished_at: Utc::now(),
                output: WorkOutput::Prepared(facts),
            },
            Err(e) => WorkloadState::Failed {
                started_at: Some(now),
                finished_at: Utc::now(),
                reason: format!("cannot write the split into {}: {e}", data.display()),
                log_tail: String::new(),
                retryable: false,
            },
        };
        self.finish(id, state)
    }

    /// Seals a trainer's output in-process (its process is gone): `work/SEAL/sealed/` holds the
    /// copy the evaluator reads and its manifest.
    fn seal(&mut self, id: WorkloadId, training: &WorkloadId, now: DateTime<Utc>) -> Result<(), RunError> {
        if self.results.contains_key(&id) {
            return Ok(());
        }
        let output = workload::trainer_output(&self.run.work(training));
        let sealed = workload::sealed_dir(&self.run.work(&id));
        let state = match seal::seal(Path::new(output.dir()), &sealed, &seal::Limits::default()) {
            Ok(manifest) => {
                let bytes = manifest.files.iter().map(|f| f.size).sum();
                let files = manifest.files.len() as u64;
                let training = seal::trainer_summary(Path::new(output.dir()));
                let output = WorkOutput::Sealed(SealSummary { digest: manifest.digest, files, bytes, training });
                WorkloadState::Succeeded { started_at: now, finished_at: Utc::now(), output }
            }
            Err(e) => WorkloadState::Failed {
                started_at: Some(now),
                finished_at: Utc::now(),
                retryable: !matches!(e, seal::SealError::Refused(_)),
                reason: e.to_string(),
                log_tail: String::new(),
            },
        };
        self.finish(id, state)
    }

    /// Records how an attempt ended: `work/ID/result.json` first, then memory.
    fn finish(&mut self, id: WorkloadId, state: WorkloadState) -> Result<(), RunError> {
        let path = self.run.work(&id).join("result.json");
        fsio::write_json(&path, &ResultFile { id: id.clone(), state: state.clone() }).map_err(io_err(&path))?;
        self.results.insert(id, state);
        Ok(())
    }

    fn launch(&mut self) -> Result<(), RunError> {
        while self.running.len() < self.options.parallel.max(1) {
            let Some((id, _)) = self.queue.front() else { break };
            // The queue's order holds: nothing starts before the first in line has its GPUs.
            let asked = self.gpus.asks(id.kind, &self.task.file.spec);
            let Some(visible_devices) = self.gpus.take(&id.to_string(), asked) else { break };
            let Some((id, launch)) = self.queue.pop_front() else { break };
            let dir = self.run.work(&id);
            // A directory without a result is a start that never got recorded: start afresh.
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            let now = Utc::now();
            let by_validator = !matches!(&launch, Launch::Train { command: Some(_), .. });
            let spec = match &launch {
                Launch::Train { strategy, command, hours, deadline, resume_from } => {
                    let resume = resume_from.as_ref().map(|from| workload::trainer_output(&self.run.work(from)));
                    let output = dir.join("out");
                    self.contract.training(strategy, command.as_deref(), (*hours, *deadline, now), resume, &output)
                }
                Launch::Evaluate { submission } => {
                    let subject = match submission {
                        Some(sealed) => Subject::Model {
                            dir: workload::sealed_model(&self.run.work(&sealed.seal)),
                            digest: Some(sealed.digest.clone()),
                        },
                        None => Subject::BaseModel,
                    };
                    self.contract.evaluation(subject)
                }
                Launch::Synthesize { seed, rows } => match self.contract.synthesis(*seed, *rows) {
                    Some(spec) => spec,
                    None => {
                        self.free_gpus(&id)?;
                        self.finish(id, not_started(now, "the task has no generator (spec.dataset.generator)".into()))?;
                        continue;
                    }
                },
            };
            let mut spec = spec;
            if !self.gpus.devices().is_empty() {
                spec.env.push(("CUDA_VISIBLE_DEVICES".into(), visible_devices));
            }
            fsio::write_json(
                &dir.join("command.json"),
                &serde_json::json!({"program": spec.program, "args": spec.args}),
            )
            .map_err(io_err(&dir))?;
            match process::spawn(&spec, &dir, &dir.join("stdout.log"), &dir.join("stderr.log")) {
                Ok(child) => {
                    let pid = child.id();
                    let ticks = process::start_ticks(pid).unwrap_or(0);
                    fsio::write_atomic(&dir.join("pid"), format!("{pid} {ticks}\n").as_bytes())
                        .map_err(io_err(&dir))?;
                    self.running.push(Running { id, child, started_at: now, by_validator });
                }
                Err(e) => {
                    self.free_gpus(&id)?;
                    self.finish(id, not_started(now, format!("cannot start {}: {e}", spec.program)))?
                }
            }
        }
        Ok(())
    }

    /// Kills whatever a workload left behind: any child that is not a running workload is an
    /// orphan re-parented here (double fork, `setsid`, a trainer that exited before its children).
    fn sweep(&mut self) {
        let keep: Vec<u32> = self.running.iter().map(|r| r.child.id()).collect();
        let killed = process::sweep_strays(&keep);
        if killed > 0 {
            self.progress.event("StrayProcessKilled", &format!("killed {killed} process(es) a workload left behind"));
        }
    }

    /// Collects finished children.
    fn reap(&mut self) -> Result<(), RunError> {
        let mut i = 0;
        while i < self.running.len() {
            let status = self.running[i].child.try_wait().map_err(io_err(&self.run.root))?;
            let Some(status) = status else {
                i += 1;
                continue;
            };
            let running = self.running.swap_remove(i);
            // Its leftovers die before its outputs are read.
            self.sweep();
            self.free_gpus(&running.id)?;
            let dir = self.run.work(&running.id);
            let finished_at = Utc::now();
            let state = match running.id.kind {
                WorkKind::Train => workload::trained(&dir, status, running.started_at, finished_at),
                WorkKind::Synthesize => workload::synthesized(&dir, status, running.started_at, finished_at),
                WorkKind::Evaluate | WorkKind::Prepare | WorkKind::Seal => {
                    workload::evaluated(&dir, status, running.started_at, finished_at)
                }
            };
            // The validator's interpreter lost the package: not the miner's failure. No
            // result is written, so re-running the command after the fix resumes here.
            if let WorkloadState::Failed { log_tail, .. } = &state
                && running.by_validator
                && preflight::package_missing(log_tail)
            {
                return Err(RunError::Environment(EnvironmentError {
                    what: format!(
                        "{} stopped: {} can no longer import gradients_trainer",
                        running.id, self.contract.python
                    ),
                    cause: log_tail.clone(),
                }));
            }
            self.finish(running.id, state)?;
        }
        Ok(())
    }

    fn stop(&mut self, id: &WorkloadId, reason: String, now: DateTime<Utc>) -> Result<(), RunError> {
        self.queue.retain(|(q, _)| q != id);
        if let Some(i) = self.running.iter().position(|r| &r.id == id) {
            let mut running = self.running.swap_remove(i);
            process::kill_group(running.child.id());
            let _ = running.child.wait();
            self.sweep();
            self.free_gpus(id)?;
            let log_tail = fsio::tail(&self.run.work(id).join("stderr.log"), 15, 8192);
            let failed = WorkloadState::Failed {
                started_at: Some(running.started_at),
                finished_at: now,
                reason,
                log_tail,
                retryable: false,
            };
            self.finish(id.clone(), failed)?;
        }
        Ok(())
    }

    /// Frees a workload's GPUs and writes what it used beside its outputs (`gpus.json`).
    fn free_gpus(&mut self, id: &WorkloadId) -> Result<(), RunError> {
        match self.gpus.release(&id.to_string()) {
            Some(used) => {
                let path = self.run.work(id).join("gpus.json");
                fsio::write_json(&path, &used).map_err(io_err(&path))
            }
            None => Ok(()),
        }
    }

    /// The leaderboard over the store at the task's end, and its input as `records.json`.
    fn emit_weights(&mut self) -> Result<(), RunError> {
        let now = self.state.finished_at.unwrap_or_else(Utc::now);
        self.store
            .export(&self.options.config.mechanism, now, &self.run.records(), &self.run.weights())
            .map_err(io_err(&self.run.root))
    }
}

/// A workload that could not start: final, nothing ran.
fn not_started(now: DateTime<Utc>, reason: String) -> WorkloadState {
    WorkloadState::Failed { started_at: None, finished_at: now, reason, log_tail: String::new(), retryable: false }
}
