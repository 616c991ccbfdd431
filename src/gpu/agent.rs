//! `gradients gpu-agent`: on a GPU node, checks the GPUs against the node's GPU labels and
//! serves per-GPU gauges on /metrics, each attributed to the pod using the GPU (NVML's process
//! → `/proc/PID/cgroup` → pod UID → the pod). Without NVML it serves CPU mode
//! (`gradients_gpu_agent_nvml_available 0`) so a scrape still tells what is wrong.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::class::{self, Mismatch};
use super::metrics::{GpuMetrics, GpuSample, PodRef};
use super::node::{self, ApiPods, NodeReporter, PodDirectory};
use super::recorded::RecordedNvml;
use super::{Discovery, GpuError, GpuInventory, cgroup};
use crate::operator::{self, http};

#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// This node's name (the `node` label; with --from-api, the Node whose labels are checked).
    #[arg(long, env = "NODE_NAME", default_value = "")]
    pub node_name: String,
    /// Address of /metrics (and /live).
    #[arg(long, env = "GRADIENTS_GPU_AGENT_ADDRESS", default_value = "0.0.0.0:9400")]
    pub listen: SocketAddr,
    /// Seconds between samples.
    #[arg(long, default_value_t = 15)]
    pub interval_s: u64,
    /// The host's /proc (mounted read-only into the agent's pod): where process cgroups are read.
    #[arg(long, default_value = "/proc")]
    pub proc_root: PathBuf,
    /// A GPU label of this node, KEY=VALUE (repeatable), checked against the GPUs.
    #[arg(long = "node-label", value_parser = parse_label)]
    pub node_labels: Vec<(String, String)>,
    /// Read this node's labels and its pods from the API server (in a cluster).
    #[arg(long)]
    pub from_api: bool,
    /// With --from-api: act as this user, e.g. the chart's
    /// system:serviceaccount:gradients-system:gradients-operator-gpu-agent (tests its RBAC).
    #[arg(long = "as")]
    pub impersonate: Option<String>,
    /// Recorded NVML readings (JSON) in place of NVML: a stand-in for machines without a GPU.
    #[arg(long)]
    pub recorded: Option<PathBuf>,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("--node-label {text:?}: expected KEY=VALUE"))
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error("cannot connect to the API server: {0}")]
    Connect(String),
    #[error("cannot {0}: {1}")]
    Kube(&'static str, #[source] kube::Error),
    #[error("cannot serve on {address}: {source}")]
    Listen { address: SocketAddr, source: std::io::Error },
}

/// One node's GPUs, sampled into [`GpuMetrics`]. `None` inventory: CPU mode.
pub struct Sampler {
    pub node: String,
    pub proc_root: PathBuf,
    pub labels: BTreeMap<String, String>,
    pub inventory: Option<Box<dyn GpuInventory>>,
    pub metrics: GpuMetrics,
    known_pods: HashMap<String, PodRef>,
    last_mismatches: Vec<Mismatch>,
}

impl Sampler {
    pub fn new(
        node: String,
        proc_root: PathBuf,
        labels: BTreeMap<String, String>,
        inventory: Option<Box<dyn GpuInventory>>,
    ) -> Self {
        let metrics = GpuMetrics::new();
        metrics.nvml_available.set(i64::from(inventory.is_some()));
        Sampler { node, proc_root, labels, inventory, metrics, known_pods: HashMap::new(), last_mismatches: Vec::new() }
    }

    /// Reads every GPU, attributes it, checks the labels and replaces the gauges. A GPU that
    /// fails to answer is left out of this sample and counted by category.
    pub async fn sample(&mut self, pods: &impl PodDirectory) -> Result<Vec<Mismatch>, AgentError> {
        let Some(inventory) = &self.inventory else { return Ok(Vec::new()) };
        let devices = inventory.devices().inspect_err(|e| self.count(e.category()))?;
        let mut samples = Vec::new();
        for device in devices.iter().cloned() {
            match inventory.reading(device.index) {
                Ok(reading) => samples.push((device, reading)),
                Err(e) => {
                    tracing::warn!(gpu = device.index, error = %e, "GPU reading failed");
                    self.count(e.category());
                }
            }
        }
        let uids: Vec<Vec<String>> = samples
            .iter()
            .map(|(_, r)| r.pids.iter().filter_map(|&pid| cgroup::pod_uid_of_pid(&self.proc_root, pid)).collect())
            .collect();
        if uids.iter().flatten().any(|uid| !self.known_pods.contains_key(uid)) {
            match pods.pods().await {
                Ok(found) => self.known_pods = found,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot name the pods using GPUs");
                    self.count("kube");
                }
            }
        }
        let samples: Vec<GpuSample> = samples
            .into_iter()
            .zip(uids)
            .map(|((device, reading), uids)| GpuSample { pod: attribute(&uids, &self.known_pods), device, reading })
            .collect();
        let mismatches = class::check(&self.labels, &devices);
        if mismatches != self.last_mismatches {
            for mismatch in &mismatches {
                tracing::warn!(node = %self.node, reason = %mismatch.reason, "GPU differs from the node's labels");
            }
            self.last_mismatches = mismatches.clone();
        }
        self.metrics.update(&self.node, &samples, &mismatches);
        Ok(mismatches)
    }

    fn count(&self, category: &str) {
        self.metrics.errors.with_label_values(&[category]).inc();
    }
}

/// The pod behind a GPU's processes: one pod → that pod; processes of several pods (time
/// slicing) → `pod="shared"`, so the series count stays one per GPU; none or unknown → empty.
pub fn attribute(uids: &[String], known: &HashMap<String, PodRef>) -> PodRef {
    let distinct: BTreeSet<&String> = uids.iter().collect();
    match distinct.into_iter().collect::<Vec<_>>().as_slice() {
        [] => PodRef::default(),
        [uid] => known.get(*uid).cloned().unwrap_or_default(),
        _ => PodRef { pod: "shared".into(), ..PodRef::default() },
    }
}

/// Serves /metrics (and /live) from the sampler's registry until the listener fails.
pub async fn serve(listener: TcpListener, metrics: GpuMetrics) -> std::io::Result<()> {
    http::serve_on(listener, Arc::new(http::Health::default()), move || metrics.render(), http::Timeouts::default())
        .await
}

pub async fn run(args: AgentArgs) -> Result<(), AgentError> {
    let inventory: Option<Box<dyn GpuInventory>> = match &args.recorded {
        Some(path) => Some(Box::new(RecordedNvml::load(path)?)),
        None => match super::discover() {
            Discovery::Nvml(nvml) => Some(nvml),
            Discovery::Cpu { .. } => None,
        },
    };
    let mut labels: BTreeMap<String, String> = args.node_labels.iter().cloned().collect();
    let mut reporter = None;
    let client = if args.from_api {
        let client =
            operator::client(args.impersonate.as_deref()).await.map_err(|e| AgentError::Connect(format!("{e:#}")))?;
        let node = node::get_node(client.clone(), &args.node_name).await?;
        labels.extend(node.metadata.labels.clone().unwrap_or_default());
        reporter = Some(NodeReporter::new(client.clone(), node));
        Some(client)
    } else {
        None
    };
    // CPU mode has nothing to check: the node's condition is left as it is.
    let inventory_present = inventory.is_some();
    let mut sampler = Sampler::new(args.node_name.clone(), args.proc_root.clone(), labels, inventory);
    let listener =
        TcpListener::bind(args.listen).await.map_err(|source| AgentError::Listen { address: args.listen, source })?;
    let address = listener.local_addr().unwrap_or(args.listen);
    eprintln!("gpu-agent: serving /metrics on {address}");
    let server = tokio::spawn(serve(listener, sampler.metrics.clone()));
    let pods = client.map(|client| ApiPods { api: kube::Api::all(client), node: args.node_name.clone() });
    let interval = Duration::from_secs(args.interval_s.max(1));
    loop {
        if server.is_finished() {
            return Err(AgentError::Listen { address, source: std::io::Error::other("the server stopped") });
        }
        let sampled = match &pods {
            Some(pods) => sampler.sample(pods).await,
            None => sampler.sample(&HashMap::new()).await,
        };
        match (sampled, &mut reporter) {
            (Ok(mismatches), Some(reporter)) if inventory_present => {
                if let Err(e) = reporter.report(&mismatches).await {
                    tracing::warn!(error = %e, "cannot report the GPU check on the node");
                    sampler.metrics.errors.with_label_values(&["kube"]).inc();
                }
            }
            (Ok(_), _) => {}
            (Err(e), _) => tracing::warn!(error = %e, "GPU sample failed"),
        }
        tokio::time::sleep(interval).await;
    }
}
