//! From an experiment file's text to a checked [`Experiment`]: TOML, then every section's types,
//! then the checks of [`validate`](super::validate), every problem reported at once.

use std::path::Path;

use super::experiment::{Axis, Experiment, Fault, Rule};
use super::problems::{deserialize_all, ExperimentError, Problem};
use super::validate::{validate, Parts};

/// An optional section: its default when absent, `None` if present but invalid.
fn optional<T: serde::de::DeserializeOwned + Default>(
    table: &toml::Table,
    key: &str,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    match table.get(key) {
        Some(value) => deserialize_all(key, value.clone(), problems),
        None => Some(T::default()),
    }
}

/// A required section: `None` (with a problem) if absent or invalid.
fn required<T: serde::de::DeserializeOwned>(
    table: &toml::Table,
    key: &str,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    match table.get(key) {
        Some(value) => deserialize_all(key, value.clone(), problems),
        None => {
            problems.push(Problem::new(key, None, format!("missing section [{key}]")));
            None
        }
    }
}

const TOP_LEVEL: [&str; 10] = [
    "name",
    "description",
    "models",
    "axes",
    "zip",
    "exclude",
    "fault",
    "settings",
    "optimizer",
    "launch",
];

impl Experiment {
    pub fn load(path: &Path) -> Result<Self, ExperimentError> {
        Ok(Self::read(path)?.0)
    }

    /// The experiment in `path` and the text it was parsed from (kept beside the results), read
    /// once so the two always agree.
    pub fn read(path: &Path) -> Result<(Self, String), ExperimentError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ExperimentError::new(
                path,
                vec![Problem::new("(file)", None, format!("cannot read: {e}"))],
            )
        })?;
        Ok((Self::parse(&text, path)?, text))
    }

    /// Parses and validates an experiment; `path` is only used to name the file in errors.
    /// Every problem is reported: unknown keys, wrong types, and the checks of
    /// [`validate`](super::validate) on every section that parsed.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ExperimentError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            ExperimentError::new(path, vec![Problem::new("(syntax)", None, syntax_error(text, &e))])
        })?;
        let mut problems = Vec::new();
        for key in table.keys().filter(|k| !TOP_LEVEL.contains(&k.as_str())) {
            problems.push(Problem::new(
                key.clone(),
                table.get(key),
                format!("unknown key; expected one of {}", TOP_LEVEL.join(", ")),
            ));
        }
        let name: Option<String> = required(&table, "name", &mut problems);
        let description: Option<String> = optional(&table, "description", &mut problems);
        let parts = Parts {
            models: optional(&table, "models", &mut problems),
            axes: required(&table, "axes", &mut problems),
            settings: required(&table, "settings", &mut problems),
            optimizer: optional(&table, "optimizer", &mut problems),
            launch: optional(&table, "launch", &mut problems),
            zip: optional(&table, "zip", &mut problems),
            exclude: optional(&table, "exclude", &mut problems),
            fault: optional(&table, "fault", &mut problems),
        };
        let mut checks = Vec::new();
        validate(name.as_deref(), &parts, &mut checks);
        // A key whose type was wrong is not judged again on the value left after pruning it.
        let reported: Vec<String> = problems.iter().map(|p| base_key(&p.key)).collect();
        problems.extend(checks.into_iter().filter(|c| !reported.contains(&base_key(&c.key))));
        match (name, description, parts) {
            (
                Some(name),
                Some(description),
                Parts {
                    models: Some(models),
                    axes: Some(axes),
                    settings: Some(settings),
                    optimizer: Some(optimizer),
                    launch: Some(launch),
                    zip: Some(zip),
                    exclude: Some(exclude),
                    fault: Some(fault),
                },
            ) if problems.is_empty() => Ok(Experiment {
                name,
                description,
                models,
                axes,
                zip: zip
                    .iter()
                    .map(|group| {
                        group.iter().map(|a| Axis::from_name(a).expect("checked axis")).collect()
                    })
                    .collect(),
                exclude: exclude.iter().map(Rule::from_table).collect(),
                fault: fault
                    .iter()
                    .map(|rule| {
                        let fault = Fault::from_rule(rule).expect("a checked fault");
                        (fault, Rule::from_table(&Fault::matchers(rule)))
                    })
                    .collect(),
                settings,
                optimizer,
                launch,
            }),
            _ => Err(ExperimentError::new(path, problems)),
        }
    }
}

/// `axes.model[1]` -> `axes.model`.
fn base_key(key: &str) -> String {
    key.split('[').next().unwrap_or(key).to_string()
}

/// Characters of the offending line shown on each side of a syntax error.
const SYNTAX_CONTEXT_CHARS: usize = 40;

/// A TOML syntax error as one short line: where it is, what is wrong, and at most
/// 2 x [`SYNTAX_CONTEXT_CHARS`] characters of the line around it (a generated file can hold a
/// line of thousands of characters, which the parser's own message would echo whole).
pub(crate) fn syntax_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end().replace('\n', "; ");
    let Some(span) = error.span() else { return message.to_string() };
    let at = text.floor_char_boundary(span.start.min(text.len()));
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    let line_no = text[..at].matches('\n').count() + 1;
    let column = text[line_start..at].chars().count() + 1;
    let before: String = {
        let chars: Vec<char> = text[line_start..at].chars().collect();
        let cut = chars.len().saturating_sub(SYNTAX_CONTEXT_CHARS);
        (if cut > 0 { "..." } else { "" }).to_string() + &chars[cut..].iter().collect::<String>()
    };
    let after: String = {
        let rest = &text[at..line_end];
        let shown: String = rest.chars().take(SYNTAX_CONTEXT_CHARS).collect();
        if shown.len() < rest.len() {
            shown + "..."
        } else {
            shown
        }
    };
    format!("line {line_no}, column {column}: {message}; near `{before}{after}`")
}
