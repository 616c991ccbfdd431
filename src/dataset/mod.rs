//! Datasets, as both executors use them: reading a task's dataset, checking its columns, and
//! writing the mechanism's split in the workload contract's layout
//! ([`crate::workloads::contract::PreparedData`]): the training split (and GRPO reward code)
//! where trainers may read it, the test and synthetic splits where only the evaluator does.
//! Text datasets are JSONL (one object per line, kept verbatim); image datasets are folders
//! of images with same-name `.txt` captions.

pub mod columns;
pub mod prepare;

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::mechanism::allocation::{SplitPlan, split_rows};
use crate::mechanism::{MechanismConfig, TaskType};
use crate::tournament::DatasetFacts;
use crate::workloads::contract::PreparedData;

const IMAGE_SUFFIXES: [&str; 4] = ["png", "jpg", "jpeg", "webp"];

/// A loaded dataset.
#[derive(Debug, Clone, PartialEq)]
pub enum Dataset {
    /// JSONL rows as written, and every key any row has.
    Text { rows: Vec<String>, columns: BTreeSet<String> },
    /// Images with their caption files, sorted by path.
    Images(Vec<(PathBuf, PathBuf)>),
}

impl Dataset {
    pub fn len(&self) -> usize {
        match self {
            Dataset::Text { rows, .. } => rows.len(),
            Dataset::Images(items) => items.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads a JSONL file: every non-empty line must be a JSON object. Errors name the line.
pub fn read_jsonl(path: &Path) -> Result<Dataset, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut rows = Vec::new();
    let mut columns = BTreeSet::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(serde_json::Value::Object(map)) => columns.extend(map.keys().cloned()),
            Ok(_) => return Err(format!("{} line {}: not a JSON object", path.display(), number + 1)),
            Err(e) => return Err(format!("{} line {}: invalid JSON: {e}", path.display(), number + 1)),
        }
        rows.push(line.to_string());
    }
    Ok(Dataset::Text { rows, columns })
}

/// Reads an image folder: every image needs a same-name `.txt` caption.
pub fn read_images(path: &Path) -> Result<Dataset, String> {
    if !path.is_dir() {
        return Err(format!("{} is not a folder of images with .txt captions", path.display()));
    }
    let mut items = Vec::new();
    let mut entries: Vec<PathBuf> = fs::read_dir(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for image in entries {
        let is_image = image
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_SUFFIXES.contains(&e.to_ascii_lowercase().as_str()));
        if !is_image {
            continue;
        }
        let caption = image.with_extension("txt");
        if !caption.is_file() {
            return Err(format!("image {} has no caption file {}", image.display(), caption.display()));
        }
        items.push((image, caption));
    }
    Ok(Dataset::Images(items))
}

/// Reads a task's dataset: JSONL for text task types, an image folder otherwise.
pub fn read(task_type: TaskType, path: &Path) -> Result<Dataset, String> {
    if task_type.is_text() { read_jsonl(path) } else { read_images(path) }
}

/// Writes the split into `layout`: `synthetic` replaces the held-out synthetic rows when the
/// task gives its own synthetic set (those rows then go back to training). An empty synthetic
/// split falls back to the test rows so the evaluator always has both.
pub fn write_splits(
    dataset: &Dataset,
    plan: &SplitPlan,
    synthetic: Option<&Dataset>,
    layout: &PreparedData,
) -> io::Result<DatasetFacts> {
    fs::create_dir_all(layout.training.dir())?;
    fs::create_dir_all(layout.heldout.dir())?;
    let mut train = plan.train.clone();
    let mut synth = plan.synthetic.clone();
    if synthetic.is_some() {
        train.append(&mut synth);
        train.sort_unstable();
    }
    let text = TaskType::InstructText;
    let image = TaskType::Image;
    match dataset {
        Dataset::Text { rows, .. } => {
            let pick = |idx: &[usize]| idx.iter().map(|&i| format!("{}\n", rows[i])).collect::<String>();
            write_atomic(&layout.training.train(text), pick(&train).as_bytes())?;
            write_atomic(&layout.heldout.test(text), pick(&plan.test).as_bytes())?;
            let synth_text = match synthetic {
                Some(Dataset::Text { rows, .. }) => rows.iter().map(|r| format!("{r}\n")).collect(),
                _ if synth.is_empty() => pick(&plan.test),
                _ => pick(&synth),
            };
            write_atomic(&layout.heldout.synth(text), synth_text.as_bytes())?;
            let synth_rows = synth_text.lines().count();
            Ok(facts(dataset.len(), train.len(), plan.test.len(), synth_rows))
        }
        Dataset::Images(items) => {
            copy_images(items, &train, Path::new(&layout.training.train(image)))?;
            copy_images(items, &plan.test, Path::new(&layout.heldout.test(image)))?;
            Ok(facts(dataset.len(), train.len(), plan.test.len(), 0))
        }
    }
}

fn write_atomic(path: &str, bytes: &[u8]) -> io::Result<()> {
    crate::local::fsio::write_atomic(Path::new(path), bytes)
}

/// The preparation workload (the local executor runs it in-process, the operator's Job as
/// `gradients prepare`): the mechanism's seeded split of `dataset` into `layout`, and the GRPO
/// reward functions ([`crate::workloads::contract::reward_functions_json`]) among the training inputs.
pub fn prepare(
    config: &MechanismConfig,
    task_type: TaskType,
    dataset: &Dataset,
    synthetic: Option<&Dataset>,
    seed: u64,
    reward_functions: Option<&str>,
    layout: &PreparedData,
) -> io::Result<DatasetFacts> {
    let plan = split_rows(config, task_type, dataset.len(), seed);
    let facts = write_splits(dataset, &plan, synthetic, layout)?;
    if let Some(rewards) = reward_functions {
        write_atomic(&layout.training.reward_functions(), rewards.as_bytes())?;
    }
    Ok(facts)
}

fn facts(rows: usize, train: usize, test: usize, synthetic: usize) -> DatasetFacts {
    DatasetFacts { rows: rows as u64, train: train as u64, test: test as u64, synthetic: synthetic as u64 }
}

/// Copies the chosen images and captions into a fresh folder, then renames it into place.
fn copy_images(items: &[(PathBuf, PathBuf)], idx: &[usize], target: &Path) -> io::Result<()> {
    let name = target.file_name().and_then(|n| n.to_str()).unwrap_or("images");
    let tmp = target.with_file_name(format!(".{name}.tmp"));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    for &i in idx {
        for file in [&items[i].0, &items[i].1] {
            if let Some(base) = file.file_name() {
                fs::copy(file, tmp.join(base))?;
            }
        }
    }
    let _ = fs::remove_dir_all(target);
    fs::rename(&tmp, target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mechanism::allocation::split_rows;
    use crate::mechanism::{MechanismConfig, TaskType};

    #[test]
    fn text_splits_are_disjoint_and_verbatim() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("d.jsonl");
        let lines: Vec<String> = (0..40).map(|i| format!("{{\"q\": \"{i}\", \"a\": \"{}\"}}", i * 2)).collect();
        fs::write(&src, lines.join("\n") + "\n\n").unwrap();
        let data = read_jsonl(&src).unwrap();
        assert_eq!(data.len(), 40);
        let plan = split_rows(&MechanismConfig::default(), TaskType::InstructText, 40, 1);
        let layout = PreparedData::under(&dir.path().join("out").to_string_lossy());
        let facts = write_splits(&data, &plan, None, &layout).unwrap();
        assert_eq!((facts.train, facts.test, facts.synthetic), (34, 4, 2));
        let read = |n: &str| fs::read_to_string(dir.path().join("out").join(n)).unwrap();
        let mut all: Vec<String> = ["training/train.jsonl", "heldout/test.jsonl", "heldout/synth.jsonl"]
            .iter()
            .flat_map(|n| read(n).lines().map(str::to_string).collect::<Vec<_>>())
            .collect();
        all.sort();
        let mut expected = lines.clone();
        expected.sort();
        assert_eq!(all, expected);
    }

    #[test]
    fn bad_rows_and_uncaptioned_images_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("d.jsonl");
        fs::write(&src, "{\"a\": 1}\n[1]\n").unwrap();
        assert!(read_jsonl(&src).unwrap_err().contains("line 2: not a JSON object"));
        fs::write(dir.path().join("x.png"), b"png").unwrap();
        assert!(read_images(dir.path()).unwrap_err().contains("no caption"));
    }
}
