//! Prometheus metrics: reconciles, errors by category, durations, and objects by phase; the
//! tournament's gauges ([`super::telemetry`]) and the durations of phases and workloads.

use std::collections::BTreeMap;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use super::telemetry::{self, Finished, Sample};
use crate::tournament::{Phase, WorkKind};

/// The `kind` label of workload durations.
const WORKLOAD_KINDS: [&str; 5] = ["prepare", "synthesize", "train", "seal", "evaluate"];

/// Buckets of tournament durations: a minute to two days.
const LONG_BUCKETS: [f64; 12] =
    [10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 43200.0, 86400.0, 172800.0];

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub reconciles: IntCounterVec,
    pub errors: IntCounterVec,
    pub durations: HistogramVec,
    /// Changes dropped because their object, handed over or waiting for its turn, reads them anyway.
    pub triggers_skipped: IntCounterVec,
    /// Objects whose last reconcile failed and whose retry is scheduled, by controller.
    pub retries_pending: IntGaugeVec,
    pub tasks: IntGaugeVec,
    pub submissions: IntGaugeVec,
    pub leader: IntGauge,
    /// Seconds a Task spent in a phase, by the phase it left.
    pub phase_durations: HistogramVec,
    /// Seconds a workload ran, by kind and result.
    pub workload_durations: HistogramVec,
    /// Tasks that ended, by result.
    pub tasks_finished: IntCounterVec,
    /// Weight pushes by sink kind and result.
    pub weight_pushes: IntCounterVec,
    /// The chain sink's decisions while a push is due, by outcome (`chain_sink::OUTCOMES`).
    pub chain_pushes: IntCounterVec,
    /// When each Leaderboard's weights were last accepted by the chain.
    pub chain_last_push: GaugeVec,
    /// The gauges of [`telemetry::GAUGES`], by name.
    tournament: BTreeMap<&'static str, GaugeVec>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("gradients".to_string()), None).expect("static prefix");
        let reconciles =
            IntCounterVec::new(Opts::new("reconcile_total", "Reconciles run, by controller"), &["controller"]).unwrap();
        let errors = IntCounterVec::new(
            Opts::new("reconcile_errors_total", "Reconciles that failed, by controller and error category"),
            &["controller", "category"],
        )
        .unwrap();
        let durations = HistogramVec::new(
            HistogramOpts::new("reconcile_duration_seconds", "Time spent in one reconcile")
                // Up to 30 s: under load a reconcile waits on the API server, and a p99 stuck at
                // the top bucket says only "more than that" (issue 13's scale runs hit 5 s).
                .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["controller"],
        )
        .unwrap();
        let triggers_skipped = IntCounterVec::new(
            Opts::new(
                "reconcile_triggers_skipped_total",
                "Changes to an object or its children dropped because the object, handed to kube-runtime or \
                 waiting for its turn, reads them anyway, by controller",
            ),
            &["controller"],
        )
        .unwrap();
        let retries_pending = IntGaugeVec::new(
            Opts::new(
                "reconcile_retries_pending",
                "Objects whose last reconcile failed, waiting for their retry (a success resets), by controller",
            ),
            &["controller"],
        )
        .unwrap();
        let tasks = IntGaugeVec::new(Opts::new("tasks", "Tasks by phase"), &["phase"]).unwrap();
        let submissions = IntGaugeVec::new(
            Opts::new("submissions", "MinerSubmissions not archived (an ended Task's are, once its Jobs go), by phase"),
            &["phase"],
        )
        .unwrap();
        let leader = IntGauge::new("leader", "1 while this replica holds the leader lease").unwrap();
        let phase_durations = HistogramVec::new(
            HistogramOpts::new("task_phase_duration_seconds", "Seconds a Task spent in a phase, by the phase it left")
                .buckets(LONG_BUCKETS.to_vec()),
            &["phase"],
        )
        .unwrap();
        let workload_durations = HistogramVec::new(
            HistogramOpts::new(
                "workload_duration_seconds",
                "Seconds a workload (prepare, train, seal, evaluate) ran, by kind and result",
            )
            .buckets(LONG_BUCKETS.to_vec()),
            &["kind", "result"],
        )
        .unwrap();
        let tasks_finished =
            IntCounterVec::new(Opts::new("tasks_finished_total", "Tasks that ended, by result"), &["result"]).unwrap();
        let weight_pushes = IntCounterVec::new(
            Opts::new("weight_pushes_total", "Weight pushes to the sinks, by sink kind and result"),
            &["sink", "result"],
        )
        .unwrap();
        let chain_pushes = IntCounterVec::new(
            Opts::new(
                "chain_push_total",
                "Chain sink decisions while a push is due, by outcome (success, dispatch_failed, pool_refused, \
                 node_error, rate_limited, key_unavailable, blocked, dry_run)",
            ),
            &["outcome"],
        )
        .unwrap();
        let chain_last_push = GaugeVec::new(
            Opts::new(
                "chain_last_push_timestamp_seconds",
                "Unix time of the newest push the chain accepted, by Leaderboard",
            ),
            &["namespace", "leaderboard"],
        )
        .unwrap();
        let tournament: BTreeMap<&'static str, GaugeVec> = telemetry::GAUGES
            .iter()
            .map(|g| (g.name, GaugeVec::new(Opts::new(g.name, g.help), g.labels).expect("valid gauge")))
            .collect();
        let mut collectors = vec![
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(errors.clone()),
            Box::new(durations.clone()),
            Box::new(triggers_skipped.clone()),
            Box::new(retries_pending.clone()),
            Box::new(tasks.clone()),
            Box::new(submissions.clone()),
            Box::new(leader.clone()),
            Box::new(phase_durations.clone()),
            Box::new(workload_durations.clone()),
            Box::new(tasks_finished.clone()),
            Box::new(weight_pushes.clone()),
            Box::new(chain_pushes.clone()),
            Box::new(chain_last_push.clone()),
        ];
        collectors.extend(tournament.values().map(|g| Box::new(g.clone()) as Box<dyn prometheus::core::Collector>));
        for collector in collectors {
            registry.register(collector).expect("unique metric names");
        }
        // Counters and histograms that alerts and panels take `increase` of exist from the
        // start, at 0: a series that appears at 1 has no increase. (A fixed 255 histogram series: 17 label sets × 15.)
        for result in [Phase::Succeeded, Phase::Failed] {
            tasks_finished.with_label_values(&[result.as_str()]);
        }
        for phase in Phase::ALL.into_iter().filter(|p| !p.is_terminal()) {
            phase_durations.with_label_values(&[phase.as_str()]);
        }
        for kind in WORKLOAD_KINDS {
            for result in ["succeeded", "failed"] {
                workload_durations.with_label_values(&[kind, result]);
            }
        }
        for result in ["pushed", "failed"] {
            weight_pushes.with_label_values(&["configmap", result]);
        }
        for outcome in super::chain_sink::OUTCOMES {
            chain_pushes.with_label_values(&[outcome]);
        }
        Metrics {
            registry,
            reconciles,
            errors,
            durations,
            triggers_skipped,
            retries_pending,
            tasks,
            submissions,
            leader,
            phase_durations,
            workload_durations,
            tasks_finished,
            weight_pushes,
            chain_pushes,
            chain_last_push,
            tournament,
        }
    }

    /// Replaces every tournament gauge's series with `samples`: what no object mentions any
    /// more has no series.
    pub fn set_tournament(&self, samples: &[Sample]) {
        for gauge in self.tournament.values() {
            gauge.reset();
        }
        for sample in samples {
            if let Some(gauge) = self.tournament.get(sample.gauge) {
                let labels: Vec<&str> = sample.labels.iter().map(String::as_str).collect();
                gauge.with_label_values(&labels).set(sample.value);
            }
        }
    }

    /// Records what changed between two statuses of a Task (once its new status is written).
    pub fn task_moved(&self, left: Option<(Phase, f64)>, finished: &[Finished], ended: Option<Phase>) {
        if let Some((phase, seconds)) = left {
            self.phase_durations.with_label_values(&[phase.as_str()]).observe(seconds);
        }
        for work in finished {
            let kind = match work.kind {
                WorkKind::Prepare => WORKLOAD_KINDS[0],
                WorkKind::Synthesize => WORKLOAD_KINDS[1],
                WorkKind::Train => WORKLOAD_KINDS[2],
                WorkKind::Seal => WORKLOAD_KINDS[3],
                WorkKind::Evaluate => WORKLOAD_KINDS[4],
            };
            let result = if work.succeeded { "succeeded" } else { "failed" };
            self.workload_durations.with_label_values(&[kind, result]).observe(work.seconds);
        }
        if let Some(phase) = ended {
            self.tasks_finished.with_label_values(&[phase.as_str()]).inc();
        }
    }

    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}
