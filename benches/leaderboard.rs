//! The leaderboard over a week of records: 20,000 tasks × 15 submissions among 256 miners.
//! Target (issue 2): at least 2 million submission records per second on one core. Also the
//! parsing of the same records as `gradients score` reads them.

use chrono::{Duration, TimeZone, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use gradients::audit;
use gradients::mechanism::records::{ScoreInput, SubmissionRecord, TaskRecord};
use gradients::mechanism::{MechanismConfig, TaskType, leaderboard};

fn week_of_records() -> Vec<TaskRecord> {
    let now = Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let miners: Vec<String> = (0..256).map(|i| format!("5Miner{i:04}")).collect();
    (0..20_000)
        .map(|t| {
            let task_type = TaskType::ALL[t % 4];
            let finished_at = now - Duration::seconds(rng.random_range(0..7 * 86_400));
            let start = rng.random_range(0..256);
            let submissions = (0..15)
                .map(|k| {
                    let (a, b) = (rng.random_range(0.5..2.0), rng.random_range(0.5..2.5));
                    let text = task_type.is_text();
                    SubmissionRecord {
                        miner: miners[(start + k * 17) % 256].clone(),
                        submitted_at: finished_at - Duration::minutes(rng.random_range(1..600)),
                        test_loss: text.then_some(a),
                        synth_loss: text.then_some(b),
                        text_guided_loss: (!text).then_some(a),
                        no_text_loss: (!text).then_some(b),
                        weights_sha256: Some(format!("{:064x}", rng.random::<u64>())),
                        rung: None,
                    }
                })
                .collect();
            TaskRecord {
                id: format!("task-{t}"),
                task_type,
                model_params_b: rng.random_range(0.5..70.0),
                hours: rng.random_range(1.0..10.0),
                finished_at,
                submissions,
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let tasks = week_of_records();
    let now = Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap();
    let config = MechanismConfig::default();
    let mut group = c.benchmark_group("leaderboard");
    group.throughput(Throughput::Elements(300_000));
    group.sample_size(10);
    group.bench_function("300k_records", |b| b.iter(|| leaderboard::compute(&config, now, &tasks)));
    // What `gradients score` adds: reading the export (typed, no value tree).
    let text = serde_json::to_string(&ScoreInput { now, tasks }).unwrap();
    group.bench_function("parse_300k_records", |b| b.iter(|| audit::parse_input(&text).unwrap()));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
