//! Collective timings in the forms people already have, for `calibrate --collectives`:
//!
//! - nccl-tests / rccl-tests text output (`all_gather_perf ... > out.txt`): the `#  Rank N ...
//!   on HOST device D` lines give the ranks and the nodes (distinct hosts), the rows
//!   `size count type redop [root] time algbw busbw #wrong time ...` the out-of-place time in
//!   microseconds; the collective from `# Collective test starting: NAME` or the file's name;
//! - nccl-tests JSON output (`-J FILE`, format version 2): `args[0]` names the collective,
//!   `config.devices` the ranks and hosts, `results[].size` and `results[].out_of_place.time`;
//! - OSU micro-benchmark text output (`osu_allreduce`, `osu_allgather`, `osu_reduce_scatter`,
//!   and the `osu_xccl_*` variants): the title names the collective, rows are `size avg-latency(us)
//!   ...`; OSU does not print where its ranks ran, so the layout is given (`--layout 4x8`).
//!
//! Sizes follow nccl-tests' convention, the model's (`collectives.rs`): all-gather output,
//! reduce-scatter input, all-reduce buffer; an OSU all-gather's size is one rank's part, so its
//! output is size x ranks.

use std::collections::BTreeSet;
use std::path::Path;

use super::collectives::Group;
use super::measurements::{CollectiveSample, MeasurementError};
use crate::records::CollectiveKind;

/// Where a file's ranks ran, when the file does not say: `nodes` x `ranks_per_node`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub nodes: u32,
    pub ranks_per_node: u32,
}

impl std::str::FromStr for Layout {
    type Err = String;

    /// `NODESxRANKS_PER_NODE`, e.g. `4x8`.
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not NODESxRANKS_PER_NODE (e.g. 4x8)");
        let (n, r) = text.split_once('x').ok_or_else(bad)?;
        let (nodes, ranks_per_node) =
            (n.trim().parse().map_err(|_| bad())?, r.trim().parse().map_err(|_| bad())?);
        if nodes == 0 || ranks_per_node == 0 {
            return Err(bad());
        }
        Ok(Self { nodes, ranks_per_node })
    }
}

impl Layout {
    fn group(self) -> Group {
        Group {
            ranks: self.nodes * self.ranks_per_node,
            nodes: self.nodes,
            per_node: self.ranks_per_node,
        }
    }
}

/// Reads one file of collective timings in any of the forms above.
///
/// # Errors
/// The file unreadable, of none of these forms, naming no collective, without a layout where
/// it states none, or a row that is not numbers (file and line named).
pub fn read_collectives(
    path: &Path,
    layout: Option<Layout>,
) -> Result<Vec<CollectiveSample>, MeasurementError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|source| MeasurementError::Io { path: name.clone(), source })?;
    let error =
        |line: usize, message: String| MeasurementError::Row { path: name.clone(), line, message };
    if text.trim_start().starts_with('{') {
        return json(&text, layout).map_err(|m| error(1, m));
    }
    if let Some(title) = text.lines().find(|l| l.starts_with("# OSU")) {
        let kind = kind_in(title).ok_or_else(|| error(1, format!("{title:?}: not a collective this model uses (all-gather, reduce-scatter, all-reduce)")))?;
        let layout = layout.ok_or_else(|| {
            error(1, "an OSU output does not say where its ranks ran: give --layout NODESxRANKS_PER_NODE".into())
        })?;
        return osu(&text, kind, layout.group()).map_err(|(line, m)| error(line, m));
    }
    let kind = text
        .lines()
        .find_map(|l| l.strip_prefix("# Collective test starting:").and_then(kind_in))
        .or_else(|| kind_in(&name))
        .ok_or_else(|| {
            error(1, "not an nccl-tests, rccl-tests or OSU output naming its collective (all_gather, reduce_scatter or all_reduce in the file's name will do)".into())
        })?;
    nccl_text(&text, kind, layout).map_err(|(line, m)| error(line, m))
}

/// The collective a title or file name names, if it is one the model uses.
fn kind_in(text: &str) -> Option<CollectiveKind> {
    let t = text.to_ascii_lowercase().replace(['-', ' '], "_");
    [
        ("all_gather", CollectiveKind::AllGather),
        ("allgather", CollectiveKind::AllGather),
        ("reduce_scatter", CollectiveKind::ReduceScatter),
        ("all_reduce", CollectiveKind::AllReduce),
        ("allreduce", CollectiveKind::AllReduce),
    ]
    .into_iter()
    .find(|(name, _)| t.contains(name))
    .map(|(_, kind)| kind)
}

/// The group of `ranks` ranks on `hosts` distinct hosts (or the given layout).
fn group_of(ranks: usize, hosts: usize, layout: Option<Layout>) -> Result<Group, String> {
    if ranks == 0 {
        return layout.map(Layout::group).ok_or_else(|| {
            "no `#  Rank N ... on HOST` lines: give --layout NODESxRANKS_PER_NODE".into()
        });
    }
    let (ranks, nodes) = (ranks as u32, hosts.max(1) as u32);
    Ok(Group { ranks, nodes, per_node: ranks.div_ceil(nodes) })
}

fn nccl_text(
    text: &str,
    kind: CollectiveKind,
    layout: Option<Layout>,
) -> Result<Vec<CollectiveSample>, (usize, String)> {
    let mut hosts = BTreeSet::new();
    let mut ranks = 0;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() > 5 && words[0] == "#" && words[1] == "Rank" {
            if let Some(i) = words.iter().position(|w| *w == "on") {
                ranks += 1;
                hosts.insert(words.get(i + 1).copied().unwrap_or_default().to_string());
            }
        }
    }
    let group = group_of(ranks, hosts.len(), layout).map_err(|m| (1, m))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if line.trim_start().starts_with('#') || words.len() < 8 {
            continue;
        }
        let bytes: f64 = match words[0].parse::<u64>() {
            Ok(b) => b as f64,
            Err(_) => continue, // Not a result row (a warning, a banner).
        };
        // Versions since 2019 print a root column after redop; older ones do not.
        let time = if words[4].parse::<i64>().is_ok() && words.len() >= 9 { 5 } else { 4 };
        let us = finite(words[time]).ok_or_else(|| {
            (i + 1, format!("time {:?} is not a finite number above 0 (microseconds)", words[time]))
        })?;
        out.push(CollectiveSample { kind, bytes, group, seconds: us * 1e-6 });
    }
    if out.is_empty() {
        return Err((1, "no result rows".into()));
    }
    Ok(out)
}

fn json(text: &str, layout: Option<Layout>) -> Result<Vec<CollectiveSample>, String> {
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let program = doc["args"][0].as_str().unwrap_or_default();
    let kind = kind_in(program)
        .ok_or_else(|| format!("args[0] {program:?} names no collective this model uses"))?;
    let devices = doc["config"]["devices"].as_array().cloned().unwrap_or_default();
    let hosts: BTreeSet<&str> = devices.iter().filter_map(|d| d["hostname"].as_str()).collect();
    let group = group_of(devices.len(), hosts.len(), layout)?;
    let results = doc["results"].as_array().ok_or("no `results` list")?;
    let mut out = Vec::new();
    for (i, r) in results.iter().enumerate() {
        let bytes =
            r["size"].as_f64().ok_or_else(|| format!("results[{i}].size is not a number"))?;
        let us = r["out_of_place"]["time"]
            .as_f64()
            .filter(|t| t.is_finite() && *t > 0.0)
            .ok_or_else(|| format!("results[{i}].out_of_place.time is not a number above 0"))?;
        out.push(CollectiveSample { kind, bytes, group, seconds: us * 1e-6 });
    }
    Ok(out)
}

fn osu(
    text: &str,
    kind: CollectiveKind,
    group: Group,
) -> Result<Vec<CollectiveSample>, (usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if line.starts_with('#') || words.len() < 2 {
            continue;
        }
        let Ok(size) = words[0].parse::<u64>() else { continue };
        let us = finite(words[1]).ok_or_else(|| {
            (i + 1, format!("latency {:?} is not a finite number above 0 (microseconds)", words[1]))
        })?;
        let bytes = match kind {
            CollectiveKind::AllGather => size as f64 * f64::from(group.ranks),
            CollectiveKind::ReduceScatter | CollectiveKind::AllReduce => size as f64,
        };
        out.push(CollectiveSample { kind, bytes, group, seconds: us * 1e-6 });
    }
    if out.is_empty() {
        return Err((1, "no result rows".into()));
    }
    Ok(out)
}

fn finite(word: &str) -> Option<f64> {
    word.parse::<f64>().ok().filter(|v| v.is_finite() && *v > 0.0)
}
