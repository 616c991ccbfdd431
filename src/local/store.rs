//! The local leaderboard store: every finished task's record, shared by all runs that use
//! the same data directory, so the 1/3/7-day windows and the miners' "quality today" used
//! by selection work across runs. One JSON file, rewritten atomically under a lock.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::fsio;
use crate::mechanism::records::{ScoreInput, TaskRecord};
use crate::mechanism::{MechanismConfig, leaderboard};

#[derive(Debug, Default, Serialize, Deserialize)]
struct StoreFile {
    tasks: Vec<TaskRecord>,
}

/// `DATA_DIR/leaderboard.json`.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
}

impl Store {
    pub fn new(data_dir: &Path) -> Self {
        Self { path: data_dir.join("leaderboard.json") }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn load(&self) -> io::Result<Vec<TaskRecord>> {
        Ok(fsio::read_json::<StoreFile>(&self.path)?.unwrap_or_default().tasks)
    }

    pub fn contains(&self, id: &str) -> io::Result<bool> {
        Ok(self.load()?.iter().any(|t| t.id == id))
    }

    /// Adds `record` (replacing a record with the same id) and drops records older than
    /// `keep_days` before it, so the file stays bounded.
    pub fn upsert(&self, record: &TaskRecord, keep_days: u32) -> io::Result<()> {
        let _lock = lock(&self.path.with_extension("lock"))?;
        let mut tasks = self.load()?;
        let horizon: DateTime<Utc> = record.finished_at - Duration::days(i64::from(keep_days) + 1);
        tasks.retain(|t| t.id != record.id && t.finished_at >= horizon);
        tasks.push(record.clone());
        fsio::write_json(&self.path, &StoreFile { tasks })
    }
}

impl Store {
    /// Writes the records of the leaderboard window at `now` in the input format of
    /// `gradients score` to `records`, and the leaderboard they give to `weights`, so that
    /// `gradients score --input records` reproduces `weights` exactly. `now` is the task's
    /// end, not the wall clock, so a resumed run writes the same files. Next to `weights`,
    /// `weights-u16.json` holds them in the format of `gradients score --expect`.
    pub fn export(
        &self,
        config: &MechanismConfig,
        now: DateTime<Utc>,
        records: &Path,
        weights: &Path,
    ) -> io::Result<()> {
        let horizon = Duration::days(i64::from(config.horizon_days()));
        let mut tasks = self.load()?;
        tasks.retain(|t| t.finished_at <= now && now - t.finished_at <= horizon);
        tasks.sort_by(|a, b| a.finished_at.cmp(&b.finished_at).then_with(|| a.id.cmp(&b.id)));
        let input = ScoreInput { now, tasks };
        let board = leaderboard::compute(config, now, &input.tasks);
        fsio::write_json(records, &input)?;
        // The same weights as `gradients score --expect` takes them: {"miner": weight_u16}.
        let published: serde_json::Map<String, serde_json::Value> =
            board.miners.iter().map(|m| (m.miner.clone(), m.weight_u16.into())).collect();
        fsio::write_json(&weights.with_file_name("weights-u16.json"), &published)?;
        fsio::write_json(weights, &serde_json::json!({"now": now, "miners": board.miners}))
    }
}

/// Takes an exclusive lock (std's `File::lock`, an `flock` on Unix), held until the returned
/// file is dropped, so concurrent runs never lose each other's records.
fn lock(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let file = File::options().create(true).truncate(false).write(true).open(path)?;
    file.lock()?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mechanism::TaskType;
    use chrono::TimeZone;

    fn record(id: &str, day: u32) -> TaskRecord {
        TaskRecord {
            id: id.into(),
            task_type: TaskType::Dpo,
            model_params_b: 1.0,
            hours: 1.0,
            finished_at: Utc.with_ymd_and_hms(2026, 11, day, 12, 0, 0).unwrap(),
            submissions: vec![],
        }
    }

    #[test]
    fn upsert_replaces_by_id_and_prunes_old_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        assert!(store.load().unwrap().is_empty());
        store.upsert(&record("a", 1), 7).unwrap();
        store.upsert(&record("b", 5), 7).unwrap();
        store.upsert(&record("b", 6), 7).unwrap();
        let ids: Vec<(String, u32)> =
            store.load().unwrap().iter().map(|t| (t.id.clone(), chrono::Datelike::day(&t.finished_at))).collect();
        assert_eq!(ids, vec![("a".into(), 1), ("b".into(), 6)]);
        store.upsert(&record("c", 20), 7).unwrap();
        assert_eq!(store.load().unwrap().len(), 1);
        assert!(store.contains("c").unwrap());
    }

    #[test]
    fn concurrent_writers_lose_no_record() {
        let dir = tempfile::tempdir().unwrap();
        std::thread::scope(|scope| {
            for writer in 0..4 {
                let store = Store::new(dir.path());
                scope.spawn(move || {
                    for n in 0..10 {
                        store.upsert(&record(&format!("w{writer}-{n}"), 20), 7).unwrap();
                    }
                });
            }
        });
        assert_eq!(Store::new(dir.path()).load().unwrap().len(), 40);
    }
}
