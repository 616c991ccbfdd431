//! Prometheus metrics: reconciles, errors by category, durations, and objects by phase.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub reconciles: IntCounterVec,
    pub errors: IntCounterVec,
    pub durations: HistogramVec,
    pub tasks: IntGaugeVec,
    pub submissions: IntGaugeVec,
    pub leader: IntGauge,
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
                .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
            &["controller"],
        )
        .unwrap();
        let tasks = IntGaugeVec::new(Opts::new("tasks", "Tasks by phase"), &["phase"]).unwrap();
        let submissions = IntGaugeVec::new(Opts::new("submissions", "Miner submissions by phase"), &["phase"]).unwrap();
        let leader = IntGauge::new("leader", "1 while this replica holds the leader lease").unwrap();
        for collector in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(errors.clone()),
            Box::new(durations.clone()),
            Box::new(tasks.clone()),
            Box::new(submissions.clone()),
            Box::new(leader.clone()),
        ] {
            registry.register(collector).expect("unique metric names");
        }
        Metrics { registry, reconciles, errors, durations, tasks, submissions, leader }
    }

    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}
