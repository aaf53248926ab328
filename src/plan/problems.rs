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
    pub fn new(key: impl Into<String>, value: Option<&toml::Value>, message: impl Into<String>) -> Self {
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
        toml::Value::Table(t) => format!("{{ {} }}", t.iter().map(|(k, v)| format!("{k} = {}", render(v))).collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    };
    if text.len() > 80 {
        format!("{}...", &text[..text.floor_char_boundary(77)])
    } else {
        text
    }
}

/// Deserializes `value` (the table at `prefix`) into `T`, collecting every type error and
/// unknown key rather than stopping at the first: a key that fails is reported, removed and
/// the rest checked again. Returns `None` if any problem was found.
pub fn deserialize_all<T: DeserializeOwned>(prefix: &str, mut value: toml::Value, problems: &mut Vec<Problem>) -> Option<T> {
    let join = |path: &str| if prefix.is_empty() { path.to_string() } else if path.is_empty() || path == "." { prefix.to_string() } else { format!("{prefix}.{path}") };
    let mut removed: Vec<String> = Vec::new();
    let mut found = false;
    loop {
        match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(t) => return if found { None } else { Some(t) },
            Err(error) => {
                let message = error.inner().to_string();
                // A required key we removed ourselves: everything else has been checked.
                if let Some(field) = message.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`')) {
                    let parent = error.path().to_string();
                    let key = if parent == "." { field.to_string() } else { format!("{parent}.{field}") };
                    if removed.contains(&key) {
                        return None;
                    }
                }
                let segments = map_keys(&error);
                let location = segments.join(".");
                let full_path = error.path().to_string();
                problems.push(Problem::new(join(&full_path), lookup(&value, &segments), message));
                found = true;
                if segments.is_empty() || !remove(&mut value, &segments) {
                    return None;
                }
                removed.push(location);
            }
        }
    }
}

/// The map keys leading to an error, up to the first array index (arrays are removed whole).
fn map_keys(error: &serde_path_to_error::Error<toml::de::Error>) -> Vec<String> {
    use serde_path_to_error::Segment;
    let mut keys = Vec::new();
    for segment in error.path().iter() {
        match segment {
            Segment::Map { key } => keys.push(key.clone()),
            _ => break,
        }
    }
    keys
}

fn lookup<'a>(value: &'a toml::Value, keys: &[String]) -> Option<&'a toml::Value> {
    keys.iter().try_fold(value, |v, k| v.get(k.as_str()))
}

fn remove(value: &mut toml::Value, keys: &[String]) -> bool {
    let Some((last, parents)) = keys.split_last() else { return false };
    let mut current = value;
    for key in parents {
        match current.get_mut(key.as_str()) {
            Some(v) => current = v,
            None => return false,
        }
    }
    current.as_table_mut().and_then(|t| t.remove(last)).is_some()
}
