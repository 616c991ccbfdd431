//! Reading the task's dataset and writing the mechanism's split into the run directory.
//! Text datasets are JSONL (one object per line, kept verbatim); image datasets are folders
//! of images with same-name `.txt` captions.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::validate::ValidTask;
use crate::mechanism::MechanismConfig;
use crate::mechanism::allocation::{SplitPlan, split_rows};
use crate::tournament::DatasetFacts;

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

/// Where the split went, inside the run directory.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitPaths {
    pub train: PathBuf,
    pub test: PathBuf,
    pub synthetic: PathBuf,
}

impl SplitPaths {
    pub fn in_dir(data: &Path, images: bool) -> Self {
        if images {
            // Image tasks have no synthetic set; the evaluator reads only the test folder.
            Self { train: data.join("train"), test: data.join("test"), synthetic: data.join("test") }
        } else {
            Self { train: data.join("train.jsonl"), test: data.join("test.jsonl"), synthetic: data.join("synth.jsonl") }
        }
    }
}

/// Writes the split: `synthetic` replaces the held-out synthetic rows when the task gives its
/// own synthetic set (those rows then go back to training). An empty synthetic split falls
/// back to the test rows so the evaluator always has both.
pub fn write_splits(
    dataset: &Dataset,
    plan: &SplitPlan,
    synthetic: Option<&Dataset>,
    data: &Path,
) -> io::Result<DatasetFacts> {
    fs::create_dir_all(data)?;
    let paths = SplitPaths::in_dir(data, matches!(dataset, Dataset::Images(_)));
    let mut train = plan.train.clone();
    let mut synth = plan.synthetic.clone();
    if synthetic.is_some() {
        train.append(&mut synth);
        train.sort_unstable();
    }
    match dataset {
        Dataset::Text { rows, .. } => {
            let pick = |idx: &[usize]| idx.iter().map(|&i| format!("{}\n", rows[i])).collect::<String>();
            super::fsio::write_atomic(&paths.train, pick(&train).as_bytes())?;
            super::fsio::write_atomic(&paths.test, pick(&plan.test).as_bytes())?;
            let synth_text = match synthetic {
                Some(Dataset::Text { rows, .. }) => rows.iter().map(|r| format!("{r}\n")).collect(),
                _ if synth.is_empty() => pick(&plan.test),
                _ => pick(&synth),
            };
            super::fsio::write_atomic(&paths.synthetic, synth_text.as_bytes())?;
            let synth_rows = synth_text.lines().count();
            Ok(facts(dataset.len(), train.len(), plan.test.len(), synth_rows))
        }
        Dataset::Images(items) => {
            copy_images(items, &train, &paths.train)?;
            copy_images(items, &plan.test, &paths.test)?;
            Ok(facts(dataset.len(), train.len(), plan.test.len(), 0))
        }
    }
}

/// The preparation workload, in-process (quick, and deterministic for the seed): the
/// mechanism's split into `data`, and the GRPO reward functions as the trainer's JSON file.
pub fn prepare(
    task: &ValidTask,
    config: &MechanismConfig,
    seed: u64,
    data: &Path,
    rewards: &Path,
) -> io::Result<DatasetFacts> {
    let spec = &task.file.spec;
    let plan = split_rows(config, spec.task_type, task.dataset.len(), seed);
    let facts = write_splits(&task.dataset, &plan, task.synthetic.as_ref(), data)?;
    if !spec.reward_functions.is_empty() {
        let list: Vec<serde_json::Value> = spec
            .reward_functions
            .iter()
            .map(|f| serde_json::json!({"name": f.name, "source": f.source, "weight": f.weight}))
            .collect();
        super::fsio::write_json(rewards, &list)?;
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
        let facts = write_splits(&data, &plan, None, &dir.path().join("out")).unwrap();
        assert_eq!((facts.train, facts.test, facts.synthetic), (34, 4, 2));
        let read = |n: &str| fs::read_to_string(dir.path().join("out").join(n)).unwrap();
        let mut all: Vec<String> = ["train.jsonl", "test.jsonl", "synth.jsonl"]
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
