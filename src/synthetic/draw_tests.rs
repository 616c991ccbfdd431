use std::collections::BTreeMap;

use proptest::prelude::*;

use super::SourceError;
use super::draw::{draw, shares, validate};
use crate::api::task::{Origin, RewardFunction};
use crate::api::task_source::{Catalog, CatalogDataset, CatalogModel, TaskSourceSpec, TaskTemplate, TypeMix};
use crate::mechanism::MechanismConfig;
use crate::mechanism::TaskType::{self, Dpo, Grpo, Image, InstructText};
use crate::mechanism::allocation::hour_range;

fn model(uri: &str, params_b: f64, task_types: &[TaskType]) -> CatalogModel {
    CatalogModel { uri: uri.into(), params_b, task_types: task_types.to_vec() }
}

fn dataset(uri: &str, task_type: TaskType, rows: u64) -> CatalogDataset {
    let reward_functions = if task_type == Grpo {
        vec![RewardFunction {
            name: "short".into(),
            source: "def short(completions, **kw): return [0.0]".into(),
            weight: 1.0,
        }]
    } else {
        Vec::new()
    };
    CatalogDataset { uri: uri.into(), task_type, columns: BTreeMap::new(), rows, synthetic_uri: None, reward_functions }
}

fn source(models: Vec<CatalogModel>, datasets: Vec<CatalogDataset>) -> TaskSourceSpec {
    TaskSourceSpec {
        in_flight: 2,
        seed: 7,
        mix: None,
        catalog: Catalog { models, datasets },
        task_template: TaskTemplate::default(),
        pause_while_organic_waiting: true,
    }
}

/// Every type served, with a distractor per kind: a model that serves only images, a big text model.
fn full() -> TaskSourceSpec {
    source(
        vec![
            model("/m/qwen-3b", 3.0, &[InstructText, Dpo, Grpo]),
            model("/m/sdxl", 2.6, &[Image]),
            model("/m/llama-8b", 8.0, &[InstructText]),
        ],
        vec![
            dataset("/d/alpaca.jsonl", InstructText, 30_000),
            dataset("/d/prefs.jsonl", Dpo, 2_400),
            dataset("/d/math.jsonl", Grpo, 120_000),
            dataset("/d/pets", Image, 40),
        ],
    )
}

#[test]
fn a_draw_is_a_synthetic_task_that_fits_its_type() {
    let spec = full();
    for index in 0..200 {
        let drawn = draw(&spec, "src", 7, index).unwrap();
        let task = &drawn.spec;
        assert_eq!(drawn.name, format!("src-{index}"));
        assert_eq!(task.origin, Origin::Synthetic);
        assert_eq!(task.task_type, drawn.task_type);
        let model = &spec.catalog.models[drawn.model];
        let data = &spec.catalog.datasets[drawn.dataset];
        assert!(model.task_types.contains(&task.task_type), "{index}: {model:?} for {}", task.task_type);
        assert_eq!(data.task_type, task.task_type);
        assert_eq!((task.base_model.uri.as_str(), task.dataset.uri.as_str()), (model.uri.as_str(), data.uri.as_str()));
        let (low, high) = hour_range(&MechanismConfig::default(), task.task_type, data.rows);
        let hours = task.hours.unwrap();
        assert!(hours.fract() == 0.0 && (f64::from(low)..=f64::from(high)).contains(&hours), "{hours} h");
        assert_eq!(task.reward_functions.is_empty(), task.task_type != Grpo);
        assert!(task.seed.unwrap() < 1 << 53);
    }
}

#[test]
fn the_same_seed_and_index_draw_the_same_task_and_others_differ() {
    let spec = full();
    assert_eq!(draw(&spec, "src", 7, 3).unwrap(), draw(&spec, "src", 7, 3).unwrap());
    let seeds: std::collections::BTreeSet<u64> =
        (0..50).map(|i| draw(&spec, "src", 7, i).unwrap().spec.seed.unwrap()).collect();
    assert_eq!(seeds.len(), 50, "every draw has its own task seed");
    let other: Vec<_> = (0..20).map(|i| draw(&spec, "src", 8, i).unwrap().spec).collect();
    let same: Vec<_> = (0..20).map(|i| draw(&spec, "src", 7, i).unwrap().spec).collect();
    assert_ne!(other, same);
}

#[test]
fn types_the_catalogue_cannot_serve_are_never_drawn_and_the_others_share_their_weight() {
    // No image model: image datasets exist but Image is left out; the rest renormalise.
    let mut spec = full();
    spec.catalog.models.retain(|m| !m.task_types.contains(&Image));
    let shares: BTreeMap<TaskType, f64> = shares(&spec).into_iter().collect();
    assert_eq!(shares[&Image], 0.0);
    assert!((shares[&Grpo] - 0.35 / 0.75).abs() < 1e-12);
    assert!((0..2_000).all(|i| draw(&spec, "src", 1, i).unwrap().task_type != Image));
}

#[test]
fn a_catalogue_that_serves_no_weighted_type_says_why() {
    let mut spec = source(vec![model("/m/sdxl", 2.6, &[Image])], vec![dataset("/d/prefs.jsonl", Dpo, 100)]);
    spec.mix = Some(TypeMix { instruct: 0.0, dpo: 1.0, grpo: 0.0, image: 1.0 });
    let error = validate(&spec, "src").unwrap_err();
    assert_eq!(error.category(), "NothingToDraw");
    let message = error.to_string();
    assert!(message.contains("Dpo (no model serves it)") && message.contains("Image (no dataset has it)"), "{message}");
}

#[test]
fn bad_entries_are_rejected_with_the_field_named() {
    let field = |spec: &TaskSourceSpec| match validate(spec, "src") {
        Err(SourceError::Invalid { field, .. }) => field,
        other => panic!("expected an invalid field, got {other:?}"),
    };
    let mut spec = full();
    spec.catalog.models[1].params_b = 0.0;
    assert_eq!(field(&spec), "spec.catalog.models[1].paramsB");
    let mut spec = full();
    spec.catalog.datasets[2].reward_functions.clear();
    assert_eq!(field(&spec), "spec.catalog.datasets[2].rewardFunctions");
    let mut spec = full();
    spec.catalog.datasets[1].reward_functions = spec.catalog.datasets[2].reward_functions.clone();
    assert_eq!(field(&spec), "spec.catalog.datasets[1].rewardFunctions");
    let mut spec = full();
    spec.catalog.datasets[1].columns.insert("answer".into(), "a".into());
    assert_eq!(field(&spec), "spec.catalog.datasets[1].columns");
    let mut spec = full();
    spec.catalog.datasets[3].synthetic_uri = Some("/d/more".into());
    assert_eq!(field(&spec), "spec.catalog.datasets[3].syntheticUri");
    let mut spec = full();
    spec.catalog.datasets[0].rows = 1;
    assert_eq!(field(&spec), "spec.catalog.datasets[0].rows");
    let mut spec = full();
    spec.catalog.models[0].task_types.clear();
    assert_eq!(field(&spec), "spec.catalog.models[0].taskTypes");
    let mut spec = full();
    spec.mix = Some(TypeMix { instruct: -1.0, dpo: 1.0, grpo: 1.0, image: 1.0 });
    assert_eq!(field(&spec), "spec.mix.instruct");
    assert!(matches!(validate(&full(), "Src_1"), Err(SourceError::Invalid { field, .. }) if field == "metadata.name"));
    assert!(validate(&full(), &"a".repeat(51)).is_err(), "NAME-INDEX must stay a DNS label");
}

fn task_types() -> impl Strategy<Value = Vec<TaskType>> {
    proptest::sample::subsequence(TaskType::ALL.to_vec(), 1..=4)
}

fn catalogue() -> impl Strategy<Value = TaskSourceSpec> {
    let models = proptest::collection::vec((0.1f64..80.0, task_types()), 1..5);
    let datasets = proptest::collection::vec((proptest::sample::select(TaskType::ALL.to_vec()), 2u64..600_000), 1..7);
    (models, datasets).prop_map(|(models, datasets)| {
        source(
            models.into_iter().enumerate().map(|(i, (b, types))| model(&format!("/m/{i}"), b, &types)).collect(),
            datasets.into_iter().enumerate().map(|(i, (t, rows))| dataset(&format!("/d/{i}"), t, rows)).collect(),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// A catalogue entry that does not fit a type is never drawn for it, whatever the catalogue.
    #[test]
    fn incompatible_entries_are_never_drawn(spec in catalogue(), seed in any::<u64>()) {
        prop_assume!(validate(&spec, "src").is_ok());
        for index in 0..300 {
            let drawn = draw(&spec, "src", seed, index).unwrap();
            prop_assert!(spec.catalog.models[drawn.model].task_types.contains(&drawn.task_type));
            prop_assert_eq!(spec.catalog.datasets[drawn.dataset].task_type, drawn.task_type);
        }
    }

    /// Over many draws each type's frequency is its share of the mix (within 5 standard errors).
    #[test]
    fn the_mix_over_many_draws_matches_the_shares(
        weights in proptest::collection::vec(0.0f64..1.0, 4),
        seed in any::<u64>(),
    ) {
        prop_assume!(weights.iter().sum::<f64>() > 0.1);
        let mut spec = full();
        spec.mix = Some(TypeMix { instruct: weights[0], dpo: weights[1], grpo: weights[2], image: weights[3] });
        const N: u64 = 5_000;
        let mut counts: BTreeMap<TaskType, u64> = BTreeMap::new();
        for index in 0..N {
            *counts.entry(draw(&spec, "src", seed, index).unwrap().task_type).or_default() += 1;
        }
        for (task_type, share) in shares(&spec) {
            let observed = *counts.get(&task_type).unwrap_or(&0) as f64 / N as f64;
            let tolerance = 5.0 * (share * (1.0 - share) / N as f64).sqrt() + 1e-9;
            prop_assert!((observed - share).abs() <= tolerance, "{task_type}: {observed} vs {share}");
        }
    }
}

#[test]
fn the_default_mix_is_the_mechanisms() {
    let shares: BTreeMap<TaskType, f64> = shares(&full()).into_iter().collect();
    assert_eq!(shares, BTreeMap::from([(InstructText, 0.25), (Dpo, 0.15), (Grpo, 0.35), (Image, 0.25)]));
}
