//! Draw `i` of a source: the task type by the mix, a model and a dataset that fit it, hours
//! by the allocation rule and a seed, as a pure function of (catalogue, mix, seed, i).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::SourceError;
use crate::api::task::{BaseModel, DatasetSpec, Origin, TaskSpec};
use crate::api::task_source::{CatalogDataset, CatalogModel, TaskSourceSpec, TypeMix};
use crate::dataset::columns::{TEMPLATE_KEYS, roles};
use crate::local::validate::is_dns_label;
use crate::mechanism::allocation::{allocate_hours, synthetic_task_type};
use crate::mechanism::config::TaskTypeMix;
use crate::mechanism::{MechanismConfig, TaskType};

/// Longest source name: `NAME-INDEX` must stay a DNS label (63) for any index below 10^12.
pub const MAX_SOURCE_NAME: usize = 50;

/// One synthetic task, before it is a Kubernetes object.
#[derive(Debug, Clone, PartialEq)]
pub struct Draw {
    pub index: u64,
    /// `SOURCE-INDEX`: the same draw always has the same name, so it is created at most once.
    pub name: String,
    pub task_type: TaskType,
    /// Positions in `catalog.models` and `catalog.datasets`.
    pub model: usize,
    pub dataset: usize,
    pub spec: TaskSpec,
}

/// The name of draw `index` of source `source`.
pub fn task_name(source: &str, index: u64) -> String {
    format!("{source}-{index}")
}

/// The mechanism's configuration with the source's mix, when it has one.
pub fn mechanism(spec: &TaskSourceSpec) -> MechanismConfig {
    let mut config = MechanismConfig::default();
    if let Some(TypeMix { instruct, dpo, grpo, image }) = spec.mix {
        config.synthetic_task_mix = TaskTypeMix { instruct, image, dpo, grpo };
    }
    config
}

pub fn serves(model: &CatalogModel, task_type: TaskType) -> bool {
    model.task_types.contains(&task_type)
}

/// Whether the catalogue has at least one model and one dataset for the type.
pub fn servable(spec: &TaskSourceSpec, task_type: TaskType) -> bool {
    spec.catalog.models.iter().any(|m| serves(m, task_type))
        && spec.catalog.datasets.iter().any(|d| d.task_type == task_type)
}

/// Each type's share of draws: its mix weight over the weights of the servable types.
pub fn shares(spec: &TaskSourceSpec) -> Vec<(TaskType, f64)> {
    let mix = drawable_mix(spec);
    let total: f64 = TaskType::ALL.iter().map(|t| mix.weight(*t)).sum();
    TaskType::ALL.iter().map(|t| (*t, if total > 0.0 { mix.weight(*t) / total } else { 0.0 })).collect()
}

/// The configured mix with the types the catalogue cannot serve set to 0.
fn drawable_mix(spec: &TaskSourceSpec) -> TaskTypeMix {
    let mix = mechanism(spec).synthetic_task_mix;
    let keep = |t: TaskType| if servable(spec, t) { mix.weight(t) } else { 0.0 };
    TaskTypeMix {
        instruct: keep(TaskType::InstructText),
        image: keep(TaskType::Image),
        dpo: keep(TaskType::Dpo),
        grpo: keep(TaskType::Grpo),
    }
}

/// Draw `index` of source `source` with `seed`. Fails only on a catalogue that
/// [`validate`] rejects.
pub fn draw(spec: &TaskSourceSpec, source: &str, seed: u64, index: u64) -> Result<Draw, SourceError> {
    validate(spec, source)?;
    let mut config = mechanism(spec);
    config.synthetic_task_mix = drawable_mix(spec);
    // One independent stream per index: draw i never depends on how many came before.
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index);
    let task_type = synthetic_task_type(&config, rng.random::<f64>());
    let models: Vec<usize> =
        (0..spec.catalog.models.len()).filter(|i| serves(&spec.catalog.models[*i], task_type)).collect();
    let datasets: Vec<usize> =
        (0..spec.catalog.datasets.len()).filter(|i| spec.catalog.datasets[*i].task_type == task_type).collect();
    let model = models[rng.random_range(0..models.len())];
    let dataset = datasets[rng.random_range(0..datasets.len())];
    let entry = &spec.catalog.datasets[dataset];
    let hours = allocate_hours(&config, task_type, entry.rows, rng.random::<u64>());
    // 53 bits: exact in JSON everywhere (kubectl, JavaScript) and inside the API server's int64.
    let task_seed = rng.random::<u64>() >> 11;
    let template = &spec.task_template;
    let task = TaskSpec {
        task_type,
        base_model: BaseModel {
            uri: spec.catalog.models[model].uri.clone(),
            params_b: spec.catalog.models[model].params_b,
        },
        dataset: DatasetSpec {
            uri: entry.uri.clone(),
            columns: entry.columns.clone(),
            synthetic_uri: entry.synthetic_uri.clone(),
            generator: None,
        },
        hours: Some(f64::from(hours)),
        deadline: None,
        miners_per_task: template.miners_per_task,
        miners: template.miners.clone(),
        miner_selector: template.miner_selector.clone(),
        gpu_class: template.gpu_class.clone(),
        origin: Origin::Synthetic,
        reward_functions: entry.reward_functions.clone(),
        baseline: template.baseline,
        evaluate_base: template.evaluate_base,
        seed: Some(task_seed),
        halving: None,
    };
    Ok(Draw { index, name: task_name(source, index), task_type, model, dataset, spec: task })
}

/// Every rule a source must follow, with the field named (the CRD enforces most of them too;
/// a file read by `gradients synthesize` has no API server in front of it).
pub fn validate(spec: &TaskSourceSpec, source: &str) -> Result<(), SourceError> {
    let bad = |field: String, message: String| Err(SourceError::Invalid { field, message });
    if !is_dns_label(source) || source.len() > MAX_SOURCE_NAME {
        return bad(
            "metadata.name".into(),
            format!("{source:?} must be a DNS label of at most {MAX_SOURCE_NAME} characters (it names the Tasks)"),
        );
    }
    if spec.in_flight > 100 {
        return bad("spec.inFlight".into(), format!("must be at most 100, found {}", spec.in_flight));
    }
    if let Some(mix) = spec.mix {
        let weights = [("instruct", mix.instruct), ("dpo", mix.dpo), ("grpo", mix.grpo), ("image", mix.image)];
        for (name, weight) in weights {
            if !(weight.is_finite() && weight >= 0.0) {
                return bad(format!("spec.mix.{name}"), format!("must be a number of at least 0, found {weight}"));
            }
        }
        if weights.iter().all(|(_, w)| *w == 0.0) {
            return bad("spec.mix".into(), "must give at least one task type a weight above 0".into());
        }
    }
    if spec.task_template.miners_per_task == Some(0) {
        return bad("spec.taskTemplate.minersPerTask".into(), "must be at least 1".into());
    }
    if spec.catalog.models.is_empty() {
        return bad("spec.catalog.models".into(), "list at least one base model".into());
    }
    if spec.catalog.datasets.is_empty() {
        return bad("spec.catalog.datasets".into(), "list at least one dataset".into());
    }
    for (i, model) in spec.catalog.models.iter().enumerate() {
        check_model(model).map_err(|(field, message)| invalid(format!("spec.catalog.models[{i}].{field}"), message))?;
    }
    for (i, dataset) in spec.catalog.datasets.iter().enumerate() {
        check_dataset(dataset)
            .map_err(|(field, message)| invalid(format!("spec.catalog.datasets[{i}].{field}"), message))?;
    }
    let mix = drawable_mix(spec);
    if TaskType::ALL.iter().all(|t| mix.weight(*t) <= 0.0) {
        let configured = mechanism(spec).synthetic_task_mix;
        let missing: Vec<String> = TaskType::ALL
            .iter()
            .filter(|t| configured.weight(**t) > 0.0)
            .map(|t| format!("{t} ({})", unservable_reason(spec, *t)))
            .collect();
        return Err(SourceError::NothingToDraw(format!(
            "no task type with a weight in the mix has both a model and a dataset: {}",
            missing.join(", ")
        )));
    }
    Ok(())
}

/// Why the catalogue cannot serve a type, or "" when it can.
pub fn unservable_reason(spec: &TaskSourceSpec, task_type: TaskType) -> &'static str {
    let model = spec.catalog.models.iter().any(|m| serves(m, task_type));
    let dataset = spec.catalog.datasets.iter().any(|d| d.task_type == task_type);
    match (model, dataset) {
        (false, false) => "no model serves it and no dataset has it",
        (false, true) => "no model serves it",
        (true, false) => "no dataset has it",
        (true, true) => "",
    }
}

fn invalid(field: String, message: String) -> SourceError {
    SourceError::Invalid { field, message }
}

type Problem = (&'static str, String);

fn check_model(model: &CatalogModel) -> Result<(), Problem> {
    if model.uri.trim().is_empty() {
        return Err(("uri", "must not be empty".into()));
    }
    if !(model.params_b.is_finite() && model.params_b > 0.0) {
        return Err(("paramsB", format!("must be a number greater than 0, found {}", model.params_b)));
    }
    if model.task_types.is_empty() {
        return Err(("taskTypes", "list at least one task type the model serves".into()));
    }
    Ok(())
}

fn check_dataset(dataset: &CatalogDataset) -> Result<(), Problem> {
    let task_type = dataset.task_type;
    if dataset.uri.trim().is_empty() {
        return Err(("uri", "must not be empty".into()));
    }
    if dataset.rows < 2 {
        return Err(("rows", format!("a split needs at least 2 rows, found {}", dataset.rows)));
    }
    let (required, optional) = roles(task_type);
    for key in dataset.columns.keys() {
        let role = required.contains(&key.as_str()) || optional.contains(&key.as_str());
        let template = task_type == TaskType::InstructText && TEMPLATE_KEYS.contains(&key.as_str());
        if !role && !template {
            let allowed: Vec<&str> = required.iter().chain(optional).copied().collect();
            return Err((
                "columns",
                format!("{key:?} is not a column role of {task_type} (roles: {})", allowed.join(", ")),
            ));
        }
    }
    if dataset.synthetic_uri.is_some() && !task_type.is_text() {
        return Err(("syntheticUri", "image tasks have no synthetic set".into()));
    }
    let grpo = task_type == TaskType::Grpo;
    if grpo && dataset.reward_functions.is_empty() {
        return Err(("rewardFunctions", "a Grpo dataset needs at least one reward function".into()));
    }
    if !grpo && !dataset.reward_functions.is_empty() {
        return Err(("rewardFunctions", format!("only Grpo datasets have reward functions, this one is {task_type}")));
    }
    for f in &dataset.reward_functions {
        if f.name.is_empty() || f.source.trim().is_empty() || !f.weight.is_finite() {
            return Err(("rewardFunctions", format!("{:?} needs a name, source and a finite weight", f.name)));
        }
    }
    Ok(())
}
