//! [`decide`]: one step of the lifecycle. See the module documentation of [`super`].

use chrono::{DateTime, Duration, Utc};

use super::action::{Action, Decision, SealedModel};
use super::config::TournamentConfig;
use super::observe::{Observation, WorkKind, WorkOutput, WorkloadId, WorkloadState};
use super::outcome::outcome;
use super::record::task_record;
use super::rungs;
use super::state::{Entrant, Phase, Role, TaskState, Work};
use super::{BASE_MODEL, BASELINE};
use crate::api::task::{Origin, TaskSpec};
use crate::mechanism::allocation::allocate_hours;
use crate::mechanism::scoring::score_task;
use crate::mechanism::selection::{Candidate, Staffing, pool_size, select_miners, staffing};

/// Computes the next state and the actions that get there from what was observed.
/// Pure: the same inputs always give the same decision.
pub fn decide(id: &str, spec: &TaskSpec, state: &TaskState, obs: &Observation, config: &TournamentConfig) -> Decision {
    let mut step = Step { id, spec, obs, config, state: state.clone(), actions: Vec::new(), wake_at: None };
    // Several transitions may fall due at once (a finished preparation leads straight to
    // selection and training); each phase runs at most once per call, so actions never repeat.
    // Training and Evaluating share one pass (`competing`), so they count as one.
    let group = |phase: Phase| if phase == Phase::Evaluating { Phase::Training } else { phase };
    let mut visited = Vec::new();
    while !visited.contains(&group(step.state.phase)) {
        visited.push(group(step.state.phase));
        step.run_phase();
    }
    Decision { state: step.state, actions: step.actions, wake_at: step.wake_at }
}

struct Step<'a> {
    id: &'a str,
    spec: &'a TaskSpec,
    obs: &'a Observation,
    config: &'a TournamentConfig,
    state: TaskState,
    actions: Vec<Action>,
    wake_at: Option<DateTime<Utc>>,
}

/// When a started workload must be stopped, given when it started.
type Limit<'f> = &'f dyn Fn(DateTime<Utc>) -> (DateTime<Utc>, String);

impl Step<'_> {
    fn now(&self) -> DateTime<Utc> {
        self.obs.now
    }

    fn seed(&self) -> u64 {
        self.spec.seed.unwrap_or(self.config.mechanism.split_seed)
    }

    fn wake(&mut self, at: DateTime<Utc>) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }

    fn notify(&mut self, reason: &str, message: String) {
        self.actions.push(Action::Notify { reason: reason.to_string(), message });
    }

    fn fail(&mut self, message: String) {
        self.notify("Failed", message.clone());
        self.state.phase = Phase::Failed;
        self.state.message = Some(message);
    }

    fn run_phase(&mut self) {
        match self.state.phase {
            Phase::Pending => {
                self.state.prepare = Work::Requested { attempt: 1, requested_at: self.now() };
                self.state.phase = Phase::Preparing;
                self.notify("Preparing", "splitting the dataset".into());
            }
            Phase::Preparing => self.preparing(),
            Phase::Selecting => self.selecting(),
            Phase::Delayed => match self.state.retry_at {
                Some(at) if at > self.now() => self.wake(at),
                _ => {
                    self.state.phase = Phase::Selecting;
                    self.state.retry_at = None;
                }
            },
            Phase::Training | Phase::Evaluating => self.competing(),
            Phase::Recording => self.recording(),
            Phase::Succeeded | Phase::Failed => {}
        }
    }

    fn preparing(&mut self) {
        let timeout = self.config.lifecycle.prepare_timeout();
        let limit = |started: DateTime<Utc>| {
            (started + timeout, format!("dataset preparation took longer than {} s", timeout.num_seconds()))
        };
        let prepare = self.state.prepare.clone();
        self.state.prepare = self.track(&prepare, WorkKind::Prepare, "", 0, &limit);
        match self.state.prepare.clone() {
            Work::Requested { attempt, .. } => {
                let id = WorkloadId::new(WorkKind::Prepare, "", attempt);
                self.actions.push(Action::PrepareDataset { id, seed: self.seed() });
            }
            Work::Succeeded { output: WorkOutput::Prepared(facts), .. } => {
                if self.state.dataset.is_none() {
                    self.state.dataset = Some(facts);
                }
                if !self.synthesized(facts) {
                    return;
                }
                match self.base_hours(facts.rows) {
                    Ok(hours) => {
                        self.state.hours = Some(hours);
                        self.state.phase = Phase::Selecting;
                    }
                    Err(message) => self.fail(message),
                }
            }
            Work::Succeeded { .. } => self.fail("dataset preparation reported no split sizes".into()),
            Work::Failed { reason, .. } => self.fail(format!("dataset preparation failed: {reason}")),
            Work::Waiting | Work::NotNeeded { .. } | Work::Active { .. } => {}
        }
    }

    /// With `spec.dataset.generator`: drives the generation after the split and says whether
    /// the synthetic set is written (its row count then replaces the held-out one).
    fn synthesized(&mut self, facts: crate::tournament::DatasetFacts) -> bool {
        let Some(generator) = &self.spec.dataset.generator else { return true };
        if self.state.synthesize.is_waiting() {
            self.state.synthesize = Work::Requested { attempt: 1, requested_at: self.now() };
            self.notify("Synthesizing", "writing the synthetic evaluation set with the generator model".into());
        }
        let timeout = self.config.lifecycle.synthesize_timeout();
        let limit = |started: DateTime<Utc>| {
            (started + timeout, format!("generating the synthetic set took longer than {} s", timeout.num_seconds()))
        };
        let synthesize = self.state.synthesize.clone();
        self.state.synthesize = self.track(&synthesize, WorkKind::Synthesize, "", 0, &limit);
        match self.state.synthesize.clone() {
            Work::Requested { attempt, .. } => {
                let id = WorkloadId::new(WorkKind::Synthesize, "", attempt);
                let rows = generator.rows.map_or(facts.synthetic.max(1), u64::from);
                self.actions.push(Action::GenerateSyntheticSet { id, seed: self.seed(), rows });
                false
            }
            Work::Succeeded { output: WorkOutput::Synthesized(summary), .. } => {
                self.state.dataset = Some(crate::tournament::DatasetFacts { synthetic: summary.rows, ..facts });
                true
            }
            Work::Succeeded { .. } => {
                self.fail("the synthetic set's generation reported no row count".into());
                false
            }
            Work::Failed { reason, .. } => {
                self.fail(format!("the synthetic evaluation set could not be generated: {reason}"));
                false
            }
            Work::Waiting | Work::NotNeeded { .. } | Work::Active { .. } => false,
        }
    }

    /// `spec.hours`, else the time left until `spec.deadline`, else the mechanism's allocation.
    fn base_hours(&self, rows: u64) -> Result<f64, String> {
        let to_deadline = self.spec.deadline.map(|d| (d - self.now()).num_milliseconds() as f64 / 3_600_000.0);
        match (self.spec.hours, to_deadline) {
            (_, Some(left)) if left <= 0.0 => Err("the task's deadline has passed before training".into()),
            (Some(hours), Some(left)) => Ok(hours.min(left)),
            (Some(hours), None) => Ok(hours),
            (None, Some(left)) => Ok(left),
            (None, None) => {
                Ok(f64::from(allocate_hours(&self.config.mechanism, self.spec.task_type, rows, self.seed())))
            }
        }
    }

    fn selecting(&mut self) {
        let mechanism = &self.config.mechanism;
        let base_hours = self.state.hours.unwrap_or(0.0);
        let synthetic = self.spec.origin == Origin::Synthetic;
        match staffing(mechanism, self.obs.pool.len(), base_hours, self.state.delays, synthetic) {
            Staffing::Proceed { hours } => {
                let seed = self.seed().wrapping_add(u64::from(self.state.delays));
                let wanted = match self.spec.miners_per_task {
                    Some(k) => k.max(1) as usize,
                    None => pool_size(mechanism, self.spec.task_type, seed),
                };
                let candidates: Vec<Candidate> = self
                    .obs
                    .pool
                    .iter()
                    .map(|m| Candidate { miner: m.name.clone(), average_quality_today: m.average_quality_today })
                    .collect();
                let chosen = select_miners(mechanism, &candidates, wanted, seed);
                let mut entrants: Vec<Entrant> = chosen
                    .iter()
                    .filter_map(|name| self.obs.pool.iter().find(|m| &m.name == name))
                    .map(|m| Entrant::new(&m.name, Role::Miner, m.strategy.clone()))
                    .collect();
                if self.spec.baseline {
                    entrants.push(Entrant::new(BASELINE, Role::Baseline, Some(BASELINE.to_string())));
                }
                if self.spec.evaluate_base {
                    entrants.push(Entrant::new(BASE_MODEL, Role::BaseModel, None));
                }
                self.state.entrants = entrants;
                self.state.hours = Some(hours);
                self.state.message = None;
                self.state.phase = Phase::Training;
                self.notify(
                    "Training",
                    format!("{} miner(s) selected: {}; {hours:.3} h each", chosen.len(), chosen.join(", ")),
                );
            }
            Staffing::Delay { retry_after_minutes, hours, delays } => {
                let at = self.now() + Duration::minutes(i64::from(retry_after_minutes));
                let message = format!(
                    "{} miner(s) available, too few: delay {delays}, retrying at {} with {hours:.3} h",
                    self.obs.pool.len(),
                    at.to_rfc3339()
                );
                self.notify("Delayed", message.clone());
                self.state.delays = delays;
                self.state.retry_at = Some(at);
                self.state.message = Some(message);
                self.state.phase = Phase::Delayed;
            }
            Staffing::GiveUp { reason } => self.fail(format!("no miners: {reason}")),
        }
    }

    /// Training and Evaluating: advance every entrant's workloads, then move on when all are done.
    fn competing(&mut self) {
        let mut starts = [Vec::new(), Vec::new(), Vec::new()];
        let everyone: Vec<usize> = (0..self.state.entrants.len()).collect();
        let mut advance = |step: &mut Self, entrants: &[usize]| {
            for &i in entrants {
                for (list, action) in starts.iter_mut().zip(step.advance_entrant(i)) {
                    list.extend(action);
                }
            }
        };
        advance(self, &everyone);
        // A finished rung of successive halving starts the survivors' next slice at once.
        if let Some(cut) = rungs::cut(&self.config.mechanism, self.spec, &mut self.state) {
            self.state.phase = Phase::Training;
            self.notify("Rung", cut.message);
            advance(self, &cut.survivors);
        }
        // Trainings first, then seals, then evaluations: the order slots are filled in.
        self.actions.extend(starts.into_iter().flatten());
        let all = |f: fn(&Entrant) -> bool| self.state.entrants.iter().all(f);
        if self.state.phase == Phase::Training && all(|e| e.training.is_terminal()) {
            self.state.phase = Phase::Evaluating;
            self.notify("Evaluating", "every training has ended".into());
        }
        let all = |f: fn(&Entrant) -> bool| self.state.entrants.iter().all(f);
        if self.state.phase == Phase::Evaluating && all(|e| e.evaluation.is_terminal()) {
            self.state.finished_at = Some(self.now());
            self.state.phase = Phase::Recording;
        }
    }

    /// Advances entrant `i` through training, seal and evaluation; returns its start actions.
    fn advance_entrant(&mut self, i: usize) -> [Option<Action>; 3] {
        let entrant = self.state.entrants[i].clone();
        let hours = rungs::slice_hours(self.spec, &self.state, &entrant);
        let allotted = Duration::milliseconds((hours * 3_600_000.0) as i64);
        let grace = self.config.lifecycle.grace();
        let deadline = self.spec.deadline;
        let train_limit = |started: DateTime<Utc>| {
            let end = deadline.map_or(started + allotted, |d| d.min(started + allotted));
            let why = format!(
                "still running {} s after its deadline ({} s allotted)",
                grace.num_seconds(),
                allotted.num_seconds()
            );
            (end + grace, why)
        };
        let mut training = entrant.training.clone();
        if training == Work::Waiting {
            training = Work::Requested { attempt: 1, requested_at: self.now() };
        }
        let training = self.track(&training, WorkKind::Train, &entrant.name, entrant.rung, &train_limit);
        let train_action = match &training {
            Work::Requested { attempt, .. } => Some(Action::StartTraining {
                id: WorkloadId::new(WorkKind::Train, &entrant.name, *attempt).at_rung(entrant.rung),
                entrant: entrant.name.clone(),
                strategy: entrant.strategy.clone(),
                hours,
                deadline,
                resume_from: entrant.rungs.last().map(|r| r.training.clone()),
            }),
            _ => None,
        };

        let mut seal = entrant.seal.clone();
        if seal == Work::Waiting {
            match &training {
                Work::Succeeded { .. } => seal = Work::Requested { attempt: 1, requested_at: self.now() },
                Work::Failed { .. } => seal = Work::NotNeeded { reason: "training failed: nothing to seal".into() },
                Work::NotNeeded { .. } => seal = Work::NotNeeded { reason: "nothing was trained".into() },
                _ => {}
            }
        }
        let timeout = self.config.lifecycle.seal_timeout();
        let seal_limit = |started: DateTime<Utc>| {
            (started + timeout, format!("sealing took longer than {} s", timeout.num_seconds()))
        };
        let seal = match self.track(&seal, WorkKind::Seal, &entrant.name, entrant.rung, &seal_limit) {
            Work::Succeeded { attempt, finished_at, output, .. } if !matches!(output, WorkOutput::Sealed(_)) => {
                let reason = "the seal reported no digest".to_string();
                Work::Failed { attempt, finished_at, reason, log_tail: String::new() }
            }
            seal => seal,
        };
        let seal_action = match (&seal, &training) {
            (Work::Requested { attempt, .. }, Work::Succeeded { attempt: trained, .. }) => Some(Action::StartSeal {
                id: WorkloadId::new(WorkKind::Seal, &entrant.name, *attempt).at_rung(entrant.rung),
                entrant: entrant.name.clone(),
                training: WorkloadId::new(WorkKind::Train, &entrant.name, *trained).at_rung(entrant.rung),
            }),
            _ => None,
        };

        let mut evaluation = entrant.evaluation.clone();
        if evaluation == Work::Waiting {
            match (&training, &seal) {
                (Work::Failed { reason, .. }, _) => {
                    evaluation = Work::NotNeeded { reason: format!("not evaluated: training failed: {reason}") };
                }
                (_, Work::Failed { reason, .. }) => {
                    evaluation = Work::NotNeeded { reason: format!("not evaluated: the seal failed: {reason}") };
                }
                (Work::NotNeeded { .. }, _) | (_, Work::Succeeded { .. }) => {
                    evaluation = Work::Requested { attempt: 1, requested_at: self.now() };
                }
                _ => {}
            }
        }
        let timeout = self.config.lifecycle.evaluation_timeout();
        let eval_limit = |started: DateTime<Utc>| {
            (started + timeout, format!("evaluation took longer than {} s", timeout.num_seconds()))
        };
        let evaluation = self.track(&evaluation, WorkKind::Evaluate, &entrant.name, entrant.rung, &eval_limit);
        let sealed = match (&training, &seal) {
            (
                Work::Succeeded { attempt: trained, .. },
                Work::Succeeded { attempt: sealed, output: WorkOutput::Sealed(summary), .. },
            ) => Some(SealedModel {
                training: WorkloadId::new(WorkKind::Train, &entrant.name, *trained).at_rung(entrant.rung),
                seal: WorkloadId::new(WorkKind::Seal, &entrant.name, *sealed).at_rung(entrant.rung),
                digest: summary.digest.clone(),
                summary: summary.training.clone(),
            }),
            _ => None,
        };
        let eval_action = match &evaluation {
            // A trained model is only ever evaluated sealed; the base model is read in place.
            Work::Requested { attempt, .. } if sealed.is_some() || entrant.role == Role::BaseModel => {
                Some(Action::StartEvaluation {
                    id: WorkloadId::new(WorkKind::Evaluate, &entrant.name, *attempt).at_rung(entrant.rung),
                    entrant: entrant.name.clone(),
                    submission: sealed,
                })
            }
            _ => None,
        };
        let slot = &mut self.state.entrants[i];
        slot.training = training;
        slot.seal = seal;
        slot.evaluation = evaluation;
        [train_action, seal_action, eval_action]
    }

    /// Folds the observation of one workload into its `Work`: starts, finishes, failures,
    /// retries (a new `Requested` attempt), losses and timeouts (with a `StopWorkload`).
    fn track(&mut self, work: &Work, kind: WorkKind, entrant: &str, rung: u32, limit: Limit<'_>) -> Work {
        let (attempt, requested_at, seen, ran_from) = match work {
            Work::Requested { attempt, requested_at } => (*attempt, *requested_at, false, None),
            Work::Active { attempt, requested_at, started_at } => (*attempt, *requested_at, true, *started_at),
            _ => return work.clone(),
        };
        let id = WorkloadId::new(kind, entrant, attempt).at_rung(rung);
        let now = self.now();
        // Until it starts, the pending timeout counts from the later of the request and the
        // workload's admission; a queued workload has no timeout.
        let (started_at, pending_since) = match self.obs.workloads.get(&id) {
            None if seen => {
                return self.retry_or_fail(&id, now, "the workload disappeared (lost or interrupted)", "", true);
            }
            None => (None, Some(requested_at)),
            Some(WorkloadState::Queued) => (None, None),
            // Seen running from the same start: its pod has ended and its Job is not yet marked
            // Complete. Still that run, under its deadline, not a new wait.
            Some(WorkloadState::Pending { since }) if ran_from.is_some_and(|r| since.is_none_or(|s| s <= r)) => {
                (ran_from, None)
            }
            Some(WorkloadState::Pending { since }) => (None, Some(since.map_or(requested_at, |s| s.max(requested_at)))),
            Some(WorkloadState::Running { started_at }) => (Some(*started_at), None),
            Some(WorkloadState::Succeeded { started_at, finished_at, output }) => {
                return Work::Succeeded {
                    attempt,
                    started_at: *started_at,
                    finished_at: *finished_at,
                    output: output.clone(),
                };
            }
            Some(WorkloadState::Failed { finished_at, reason, log_tail, retryable, .. }) => {
                return self.retry_or_fail(&id, *finished_at, reason, log_tail, *retryable);
            }
        };
        let stop = match started_at {
            Some(started) => {
                let (kill_at, why) = limit(started);
                if now > kill_at {
                    Some(why)
                } else {
                    self.wake(kill_at);
                    None
                }
            }
            None => match (pending_since, self.config.lifecycle.pending_timeout()) {
                (Some(since), Some(timeout)) if now > since + timeout => {
                    Some(format!("did not start within {} s", timeout.num_seconds()))
                }
                (Some(since), Some(timeout)) => {
                    self.wake(since + timeout);
                    None
                }
                _ => None,
            },
        };
        if let Some(reason) = stop {
            self.actions.push(Action::StopWorkload { id, reason: reason.clone() });
            return Work::Failed { attempt, finished_at: now, reason, log_tail: String::new() };
        }
        let present = self.obs.workloads.contains_key(&id);
        if present { Work::Active { attempt, requested_at, started_at } } else { work.clone() }
    }

    fn retry_or_fail(
        &mut self,
        id: &WorkloadId,
        at: DateTime<Utc>,
        reason: &str,
        log_tail: &str,
        retryable: bool,
    ) -> Work {
        if retryable && id.attempt < self.config.lifecycle.max_attempts {
            self.notify("Retrying", format!("{id}: {reason}; starting attempt {}", id.attempt + 1));
            return Work::Requested { attempt: id.attempt + 1, requested_at: self.now() };
        }
        let reason = if retryable && id.attempt > 1 {
            format!("{reason} (after {} attempts)", id.attempt)
        } else {
            reason.to_string()
        };
        Work::Failed { attempt: id.attempt, finished_at: at, reason, log_tail: log_tail.to_string() }
    }

    fn recording(&mut self) {
        let Some(record) = task_record(self.id, self.spec, &self.state) else {
            // Unreachable through `decide`; a hand-edited state gets its timestamp now.
            self.state.finished_at = Some(self.now());
            return;
        };
        if !self.obs.recorded {
            self.actions.push(Action::RecordResults { record });
            return;
        }
        self.actions.push(Action::EmitWeights);
        let scored = score_task(&self.config.mechanism, &record);
        if scored.ranked > 0 {
            self.state.phase = Phase::Succeeded;
            self.state.message = None;
            self.notify("Succeeded", format!("{} of {} miner(s) ranked", scored.ranked, record.submissions.len()));
        } else {
            let reasons: Vec<String> = self
                .state
                .entrants
                .iter()
                .filter(|e| e.role == Role::Miner)
                .map(|e| {
                    let why = outcome(e).failure.unwrap_or_else(|| "no usable losses".into());
                    format!("{}: {why}", e.name)
                })
                .collect();
            self.fail(format!("every miner failed (scores recorded): {}", reasons.join("; ")));
        }
    }
}
