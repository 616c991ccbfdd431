//! The column mapping of a task against its dataset: every key a role of the task type (or an
//! instruct template), every mapped column present. `gradients run` checks it before anything
//! starts, the operator's preparation Job before it writes a split.

use std::collections::BTreeMap;

use super::Dataset;
use crate::mechanism::TaskType;

/// Column roles per task type: (required, optional). Template keys are not columns.
pub(crate) fn roles(task_type: TaskType) -> (&'static [&'static str], &'static [&'static str]) {
    match task_type {
        TaskType::InstructText => (&["instruction", "output"], &["input", "system"]),
        TaskType::Dpo => (&["prompt", "chosen", "rejected"], &["system"]),
        TaskType::Grpo => (&["prompt"], &["extra"]),
        TaskType::Image => (&[], &[]),
    }
}

/// Instruct templates, in the Task's spelling and in the CLIs' (`columns_arg`).
pub(crate) const TEMPLATE_KEYS: [&str; 3] = ["format", "noInputFormat", "no_input_format"];

/// A problem with one key: (the key, what is wrong).
pub type ColumnProblem = (String, String);

/// Checks `columns` (role → column) against the columns `dataset` has; `source` names the
/// dataset in the message. Image datasets have no columns.
pub fn check(
    task_type: TaskType,
    columns: &BTreeMap<String, String>,
    dataset: &Dataset,
    source: &str,
) -> Result<(), ColumnProblem> {
    let Dataset::Text { columns: present, .. } = dataset else { return Ok(()) };
    let (required, optional) = roles(task_type);
    for key in columns.keys() {
        let known = required.contains(&key.as_str()) || optional.contains(&key.as_str());
        let template = task_type == TaskType::InstructText && TEMPLATE_KEYS.contains(&key.as_str());
        if !known && !template {
            let allowed: Vec<&str> = required.iter().chain(optional).copied().collect();
            return Err((key.clone(), format!("not a column role of {task_type} (roles: {})", allowed.join(", "))));
        }
    }
    for role in required.iter().chain(optional) {
        let column = match columns.get(*role) {
            Some(column) => column.as_str(),
            None if required.contains(role) => role,
            None => continue,
        };
        if !present.contains(column) {
            let names: Vec<&str> = present.iter().map(String::as_str).collect();
            return Err((
                role.to_string(),
                format!("column {column:?} is not in the dataset ({source} has: {})", names.join(", ")),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(keys: &[&str]) -> Dataset {
        Dataset::Text { rows: vec![], columns: keys.iter().map(|k| k.to_string()).collect() }
    }

    #[test]
    fn roles_and_columns_are_checked() {
        let map = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let data = rows(&["q", "a"]);
        let ok = map(&[("instruction", "q"), ("output", "a"), ("no_input_format", "{instruction}")]);
        assert_eq!(check(TaskType::InstructText, &ok, &data, "d.jsonl"), Ok(()));
        let missing = check(TaskType::InstructText, &map(&[("instruction", "q"), ("output", "x")]), &data, "d.jsonl");
        assert_eq!(missing.unwrap_err().0, "output");
        let unknown = check(TaskType::Dpo, &map(&[("bogus", "q")]), &data, "d.jsonl").unwrap_err();
        assert!(unknown.1.contains("not a column role of Dpo"), "{unknown:?}");
    }
}
