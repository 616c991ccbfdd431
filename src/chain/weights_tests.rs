use std::collections::BTreeMap;

use super::*;

fn limits(subnetwork_n: u16, min_allowed_weights: u16, max_weights_limit: u16) -> SubnetLimits {
    SubnetLimits { subnetwork_n, min_allowed_weights, max_weights_limit }
}

fn uids(pairs: &[(&str, u16)]) -> BTreeMap<String, u16> {
    pairs.iter().map(|(h, u)| (h.to_string(), *u)).collect()
}

fn miners(pairs: &[(&str, f64)]) -> Vec<(String, f64)> {
    pairs.iter().map(|(h, w)| (h.to_string(), *w)).collect()
}

#[test]
fn max_upscales_and_drops_uids_without_weight() {
    let out =
        for_chain(&miners(&[("a", 0.5), ("b", 0.25)]), &uids(&[("a", 2), ("b", 0), ("c", 1)]), limits(4, 0, 65535))
            .unwrap();
    // uid 1 (c) and uid 3 (nobody) have no weight and are not sent.
    assert_eq!((out.dests, out.weights), (vec![0, 2], vec![32768, 65535]));
    assert!(out.unregistered.is_empty());
}

#[test]
fn unregistered_miner_is_reported_and_gets_nothing() {
    let out = for_chain(&miners(&[("a", 0.2), ("ghost", 0.8)]), &uids(&[("a", 0)]), limits(2, 0, 65535)).unwrap();
    assert_eq!((out.dests, out.weights), (vec![0], vec![65535]));
    assert_eq!(out.unregistered, vec![Unregistered { hotkey: "ghost".into(), weight: 0.8 }]);
}

#[test]
fn all_zero_weights_become_uniform_over_the_subnet() {
    let out = for_chain(&miners(&[("a", 0.0)]), &uids(&[("a", 0)]), limits(3, 0, 65535)).unwrap();
    assert_eq!((out.dests, out.weights), (vec![0, 1, 2], vec![65535; 3]));
}

#[test]
fn subnet_smaller_than_min_allowed_is_uniform() {
    let out = for_chain(&miners(&[("a", 1.0)]), &uids(&[("a", 1)]), limits(3, 8, 65535)).unwrap();
    assert_eq!((out.dests, out.weights), (vec![0, 1, 2], vec![65535; 3]));
}

#[test]
fn too_few_weights_are_padded_to_every_uid() {
    // One weight of 1.0 among 4 uids, 2 required: every uid gets 1e-5 on top of its weight,
    // so the others end at round(1e-5 / (1 + 1e-5) * 65535) = 1.
    let out = for_chain(&miners(&[("a", 1.0)]), &uids(&[("a", 2)]), limits(4, 2, 65535)).unwrap();
    assert_eq!((out.dests, out.weights), (vec![0, 1, 2, 3], vec![1, 1, 65535, 1]));
}

#[test]
fn max_weight_limit_clips_the_top_weight() {
    // Limit 0.5 over weights 8:1:1: the top is clipped to about half of the total.
    let out = for_chain(
        &miners(&[("a", 8.0), ("b", 1.0), ("c", 1.0)]),
        &uids(&[("a", 0), ("b", 1), ("c", 2)]),
        limits(3, 1, 32768),
    )
    .unwrap();
    assert_eq!(out.dests, vec![0, 1, 2]);
    let [top, b, c] = [out.weights[0], out.weights[1], out.weights[2]];
    assert_eq!(top, 65535);
    assert_eq!(b, c);
    // Without the limit b would be 65535/8 = 8192; clipped, the top is about b + c.
    assert!((f64::from(b) * 2.0 - 65535.0).abs() < 8.0, "b = {b}");
}

#[test]
fn ties_keep_equal_values() {
    let out = for_chain(
        &miners(&[("a", 0.3), ("b", 0.3), ("c", 0.1)]),
        &uids(&[("a", 0), ("b", 1), ("c", 2)]),
        limits(3, 0, 65535),
    )
    .unwrap();
    assert_eq!(out.weights, vec![65535, 65535, 21845]);
}

#[test]
fn bad_inputs_name_the_field() {
    let u = uids(&[("a", 0)]);
    assert_eq!(for_chain(&miners(&[("a", 1.0)]), &u, limits(0, 0, 65535)), Err(WeightsError::EmptySubnet));
    let err = for_chain(&miners(&[("a", f64::NAN)]), &u, limits(1, 0, 65535)).unwrap_err();
    assert!(err.to_string().contains("miner \"a\": field \"weight\""), "{err}");
    assert!(matches!(for_chain(&miners(&[("a", -1.0)]), &u, limits(1, 0, 65535)), Err(WeightsError::BadWeight { .. })));
    assert_eq!(
        for_chain(&[], &uids(&[("a", 5)]), limits(5, 0, 65535)),
        Err(WeightsError::UidOutOfRange { hotkey: "a".into(), uid: 5, subnetwork_n: 5 })
    );
    assert_eq!(
        for_chain(&[], &uids(&[("a", 1), ("b", 1)]), limits(5, 0, 65535)),
        Err(WeightsError::DuplicateUid { uid: 1, first: "a".into(), second: "b".into() })
    );
}

#[test]
fn numpy_pairwise_sum_differs_from_a_running_sum() {
    // 129 float32 values: numpy splits 64 + 65; a running sum loses the small ones.
    let mut x = vec![1e-8f32; 129];
    x[0] = 1.0;
    let running = x.iter().fold(0f32, |a, &b| a + b);
    assert_eq!(running, 1.0);
    assert!(numpy_sum(&x) > 1.0);
}
