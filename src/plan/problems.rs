//! Every problem in an experiment file, found in one pass and reported together, each naming
//! the file, the key and the offending value.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Dotted key path, e.g. `settings.steps` or `axes.model[1]`.
    pub key: String,
    /// The value as written in the file (TOML syntax), if there is one.
    pub value: Option<String>,
    pub message: String,
}

impl Problem {
    pub fn new(
        key: impl Into<String>,
        value: Option<&toml::Value>,
        message: impl Into<String>,
    ) -> Self {
        Self { key: key.into(), value: value.map(render), message: message.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(value) => write!(f, "{} = {}: {}", self.key, value, self.message),
            None => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

/// An experiment file that cannot be used, with all of its problems.
#[derive(Debug, thiserror::Error)]
pub struct ExperimentError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ExperimentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(f, "{}: {n} problem{}", self.file.display(), if n == 1 { "" } else { "s" })?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

impl ExperimentError {
    pub fn new(file: &Path, problems: Vec<Problem>) -> Self {
        Self { file: file.to_path_buf(), problems }
    }
}

/// TOML text of a value, short enough for one line of an error message.
fn render(value: &toml::Value) -> String {
    let text = match value {
        toml::Value::Table(t) => format!(
            "{{ {} }}",
            t.iter().map(|(k, v)| format!("{k} = {}", render(v))).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    };
    if text.len() > 80 {
        format!("{}...", &text[..text.floor_char_boundary(77)])
    } else {
        text
    }
}

/// Deserializes `value` (the table at `prefix`) into `T`, collecting every type error and
/// unknown key rather than stopping at the first: the offending key (or array element) is
/// reported, pruned, and the rest checked again. Returns what is left after pruning (so later
/// checks can still look at it), or `None` if a required key had to go.
pub fn deserialize_all<T: DeserializeOwned>(
    prefix: &str,
    mut value: toml::Value,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    let mut pruned = Pruned::default();
    loop {
        let error = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(t) => return Some(t),
            Err(error) => error,
        };
        // toml's messages end with a line naming the key; the path already does.
        let message =
            error.inner().to_string().lines().next().unwrap_or_default().trim().to_string();
        let mut keys: Vec<String> = Vec::new();
        let mut index = None;
        for segment in error.path().iter() {
            match segment {
                serde_path_to_error::Segment::Map { key } if index.is_none() => {
                    keys.push(key.clone())
                }
                serde_path_to_error::Segment::Seq { index: i } if index.is_none() => {
                    index = Some(*i)
                }
                _ => break,
            }
        }
        if let Some(field) =
            message.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`'))
        {
            // A required key pruned earlier: everything else in this section has been checked.
            let mut missing = keys.clone();
            missing.push(field.to_string());
            if pruned.keys.contains(&missing) {
                return None;
            }
        }
        let original = index.map(|i| pruned.original_index(&keys, i));
        let mut key = std::iter::once(prefix.to_string())
            .chain(keys.iter().cloned())
            .filter(|k| !k.is_empty())
            .collect::<Vec<_>>()
            .join(".");
        if let Some(i) = original {
            key.push_str(&format!("[{i}]"));
        }
        let shown = lookup(&value, &keys).map(|v| match (v, index) {
            (toml::Value::Array(items), Some(i)) => items.get(i).unwrap_or(v),
            _ => v,
        });
        problems.push(Problem::new(
            if key.is_empty() { "(top level)".to_string() } else { key },
            shown,
            message,
        ));
        let removed = match (index, original) {
            (Some(i), Some(o)) => {
                remove_element(&mut value, &keys, i)
                    && pruned.elements.push_then_true((keys.clone(), o))
            }
            _ => !keys.is_empty() && remove(&mut value, &keys) && pruned.keys.push_then_true(keys),
        };
        if !removed {
            return None;
        }
    }
}

trait PushThenTrue<T> {
    fn push_then_true(&mut self, item: T) -> bool;
}

impl<T> PushThenTrue<T> for Vec<T> {
    fn push_then_true(&mut self, item: T) -> bool {
        self.push(item);
        true
    }
}

/// What has been pruned so far: whole keys, and array elements by their original index.
#[derive(Default)]
struct Pruned {
    keys: Vec<Vec<String>>,
    elements: Vec<(Vec<String>, usize)>,
}

impl Pruned {
    /// The index in the file of what is now element `index` of the array at `keys`.
    fn original_index(&self, keys: &[String], index: usize) -> usize {
        let mut removed: Vec<usize> =
            self.elements.iter().filter(|(k, _)| k == keys).map(|(_, i)| *i).collect();
        removed.sort_unstable();
        let mut original = index;
        for r in removed {
            if r <= original {
                original += 1;
            }
        }
        original
    }
}

fn lookup<'a>(value: &'a toml::Value, keys: &[String]) -> Option<&'a toml::Value> {
    keys.iter().try_fold(value, |v, k| v.get(k.as_str()))
}

fn lookup_mut<'a>(value: &'a mut toml::Value, keys: &[String]) -> Option<&'a mut toml::Value> {
    keys.iter().try_fold(value, |v, k| v.get_mut(k.as_str()))
}

fn remove(value: &mut toml::Value, keys: &[String]) -> bool {
    let Some((last, parents)) = keys.split_last() else { return false };
    lookup_mut(value, parents).and_then(|v| v.as_table_mut()).and_then(|t| t.remove(last)).is_some()
}

fn remove_element(value: &mut toml::Value, keys: &[String], index: usize) -> bool {
    match lookup_mut(value, keys).and_then(|v| v.as_array_mut()) {
        Some(items) if index < items.len() => {
            items.remove(index);
            true
        }
        _ => false,
    }
}
