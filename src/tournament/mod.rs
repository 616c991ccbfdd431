//! The lifecycle of one Task as a pure state machine: observe → decide → actions.
//!
//! Two executors drive it: the operator (Kubernetes Jobs as workloads, the Task's status
//! subresource as state) and `gradients run` (local processes, a run directory as state).
//! Neither owns any tournament logic; both loop:
//!
//! ```text
//!   state  = load()                                  // status subresource / RUN/state.json
//!   obs    = Observation { now, pool, workloads, recorded }   // what the executor sees
//!   Decision { state, actions, wake_at } = decide(id, spec, &state, &obs, &config)
//!   save(state); apply(actions)                      // persist first, then act
//!   sleep until something changes or wake_at
//! ```
//!
//! `decide` is a function of its inputs only (the clock is `obs.now`), so it is unit-tested
//! for every transition and it can be called any number of times: every action is idempotent
//! for an executor that keys workloads by [`WorkloadId`] (a second `StartTraining` for an id
//! that already exists is a no-op, as a server-side apply of the same Job is).
//!
//! Phases ([`Phase`]):
//!
//! ```text
//!  Pending ─► Preparing ─► Selecting ─► Training ─► Evaluating ─► Recording ─► Succeeded
//!                │            │  ▲                                     │
//!                │            ▼  │ retry_at reached                    └──► Failed (every miner failed;
//!                │          Delayed (too few miners: extended hours)           scores still recorded)
//!                └─► Failed (preparation failed, no miners after the last delay)
//! ```
//!
//! - **Preparing**: one `PrepareDataset` workload splits the dataset with
//!   [`crate::mechanism::allocation::split_rows`]; its output (row counts) sets the hours
//!   (`spec.hours`, the time left to `spec.deadline`, or [`crate::mechanism::allocation::allocate_hours`]).
//!   With `spec.dataset.generator`, one `GenerateSyntheticSet` follows (still Preparing): the
//!   generator writes the synthetic split, whose row count replaces the held-out one; its
//!   failure is the task's, so the task fails before any miner is drawn.
//! - **Selecting**: [`crate::mechanism::selection::staffing`] on the observed pool; proceed with
//!   [`crate::mechanism::selection::select_miners`], or delay with an extended allocation.
//! - **Training**: one `StartTraining` per entrant (the selected miners, plus the `baseline`
//!   strategy when `spec.baseline`); each gets `hours` from its own start (an executor with
//!   fewer slots than entrants starts them in turns, each with the full allotment), capped by
//!   `spec.deadline`. A training still running after its deadline plus a grace is stopped and failed.
//! - **Sealing** (per entrant, during Training and Evaluating): once a trainer has finished,
//!   one `StartSeal` copies its model where nobody can write and records its tree digest
//!   ([`SealSummary`]). A model the seal refuses (a symlink, a FIFO, over the size caps) is
//!   not evaluated; its submission is recorded as failed.
//! - **Evaluating**: one `StartEvaluation` per sealed model, as soon as it is sealed, with the
//!   digest the evaluator must find, plus the untrained base model as a reference row when
//!   `spec.evaluateBase`. A failed training is not evaluated; its submission is recorded as failed.
//! - **Recording**: the miners' results (never the baseline's or the base's) become one
//!   [`TaskRecord`](crate::mechanism::records::TaskRecord), scored with
//!   [`crate::mechanism::scoring::score_task`]; `RecordResults` asks the executor to store it,
//!   and once `obs.recorded` says it is stored, `EmitWeights` asks it to recompute the leaderboard.
//!
//! - **Rungs** (`spec.halving`, an extension of the paper): Training and Evaluating repeat per
//!   rung of [`crate::mechanism::halving::plan`]. Each miner trains its rung's slice; when
//!   every miner still in the field is evaluated, the best ⌈n/η⌉ go back to Training for the
//!   next slice (`StartTraining` with `resume_from`: their previous training), the others
//!   keep their last evaluation and rank below the survivors. The baseline trains the whole
//!   allotment at once.
//!
//! Retries: a workload that fails for a reason outside the miner's control (`retryable`: lost
//! node, evicted pod, interrupted run, evaluator crash) is started again as a new attempt with a
//! new [`WorkloadId`], up to `max_attempts`; a workload that was seen running and then vanishes
//! counts as lost. A miner's own failure (its trainer exits non-zero, writes no model, overruns)
//! is final. Timeouts: training at its deadline plus `deadline_grace_s`, a seal after
//! `seal_timeout_s`, evaluation after
//! `evaluation_timeout_s`, preparation after `prepare_timeout_s`, and anything that has not
//! started after `pending_timeout_s` when that is set.

mod action;
mod config;
mod decide;
mod eval_report;
mod observe;
mod outcome;
mod record;
mod rungs;
mod state;

pub use action::{Action, Decision, SealedModel};
pub use config::{LifecycleConfig, TournamentConfig};
pub use decide::decide;
pub use eval_report::{EvalCheck, EvalReport, EvalReportError, FailureCategory, RESULT_LIMIT};
pub use observe::{
    DatasetFacts, Observation, PoolMiner, SealSummary, SyntheticSummary, TrainingSummary, WorkKind, WorkOutput,
    WorkloadId, WorkloadState,
};
pub use outcome::{Outcome, Scores, outcome};
pub use record::task_record;
pub use rungs::{slice_hours, task_plan};
pub use state::{Entrant, Phase, Role, RungResult, TaskState, Work};

/// Entrant name of the baseline (AutoTrain defaults) reference; miners may not use it.
pub const BASELINE: &str = "baseline";
/// Entrant name of the untrained base model's reference evaluation; miners may not use it.
pub const BASE_MODEL: &str = "base-model";

#[cfg(test)]
mod tests;
