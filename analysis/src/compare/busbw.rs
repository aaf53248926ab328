//! The recorded collectives of a point compared as bus bandwidth against message size, by
//! collective and group size, in nccl-tests' conventions (`doc/PERFORMANCE.md`): algorithm
//! bandwidth = the full buffer's bytes / the call's time; bus bandwidth = algorithm bandwidth
//! x 2(n-1)/n for all-reduce and x (n-1)/n for all-gather and reduce-scatter, a figure that
//! compares with the links' speed whatever the group size. A call's time is its time on the
//! device's stream where the backend kept one (NCCL), else from its start to its completion.

use std::collections::BTreeMap;
use std::path::Path;

use shardsweep_records::RecordsReader;

use crate::stats::median;
use crate::AnalysisError;

/// Calls of one collective, group size and message size over a point's steady steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bandwidth {
    pub calls: usize,
    /// Median call time (s) and the bus bandwidth at it (bytes/s).
    pub time_s: f64,
    pub bus_bytes_per_s: f64,
}

/// (kind, group size, payload bytes).
pub type Key = (String, u32, u64);

/// The bus-bandwidth factor of nccl-tests for `kind` over `n` ranks.
pub fn bus_factor(kind: &str, n: u32) -> f64 {
    let n = f64::from(n.max(1));
    match kind {
        "all_reduce" => 2.0 * (n - 1.0) / n,
        _ => (n - 1.0) / n,
    }
}

/// Bandwidth per (kind, group, size) of the point in `dir`, over steps from `steady_from` on.
/// A point without collectives (one rank) has none.
pub fn bandwidths(dir: &Path, steady_from: u32) -> Result<BTreeMap<Key, Bandwidth>, AnalysisError> {
    let file = RecordsReader::open(dir)?;
    if file.names("collectives")?.is_none() {
        return Ok(BTreeMap::new());
    }
    let column = |name: &str| file.column("collectives", name);
    let kinds = file.text_column("collectives", "kind")?;
    let (steps, bytes, group) = (column("step")?, column("payload_bytes")?, column("group_size")?);
    let (start, end) = (column("start_s")?, column("end_s")?);
    let stream = column("stream_s").unwrap_or_else(|_| vec![f64::NAN; kinds.len()]);
    let mut times: BTreeMap<Key, Vec<f64>> = BTreeMap::new();
    for i in (0..kinds.len()).filter(|&i| steps[i] >= f64::from(steady_from)) {
        let time = if stream[i].is_finite() { stream[i] } else { end[i] - start[i] };
        if time > 0.0 {
            let key = (kinds[i].clone(), group[i] as u32, bytes[i] as u64);
            times.entry(key).or_default().push(time);
        }
    }
    Ok(times
        .into_iter()
        .map(|(key, t)| {
            let time_s = median(&t);
            let bus = key.2 as f64 / time_s * bus_factor(&key.0, key.1);
            (key, Bandwidth { calls: t.len(), time_s, bus_bytes_per_s: bus })
        })
        .collect())
}

/// One (kind, group, size) on both sides.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BandwidthChange {
    pub point: String,
    pub kind: String,
    pub group_size: u32,
    pub payload_bytes: u64,
    pub calls_before: usize,
    pub calls_after: usize,
    pub bus_bytes_per_s_before: f64,
    pub bus_bytes_per_s_after: f64,
    /// after / before.
    pub ratio: f64,
}

/// The sizes both sides moved, paired.
pub fn pair(
    point: &str,
    before: &BTreeMap<Key, Bandwidth>,
    after: &BTreeMap<Key, Bandwidth>,
) -> Vec<BandwidthChange> {
    before
        .iter()
        .filter_map(|(key, b)| {
            let a = after.get(key)?;
            Some(BandwidthChange {
                point: point.into(),
                kind: key.0.clone(),
                group_size: key.1,
                payload_bytes: key.2,
                calls_before: b.calls,
                calls_after: a.calls,
                bus_bytes_per_s_before: b.bus_bytes_per_s,
                bus_bytes_per_s_after: a.bus_bytes_per_s,
                ratio: a.bus_bytes_per_s / b.bus_bytes_per_s,
            })
        })
        .collect()
}

/// For one collective kind of a point: the sizes whose bus bandwidth moved by `min_effect` or
/// more (either way: a fall to 1 / (1 + min_effect) counts as much as a rise) in the direction of the largest move, as (smallest size, largest size, median ratio).
pub fn band(changes: &[BandwidthChange], kind: &str, min_effect: f64) -> Option<(u64, u64, f64)> {
    let of_kind: Vec<&BandwidthChange> = changes.iter().filter(|c| c.kind == kind).collect();
    let worst =
        of_kind.iter().max_by(|a, b| (a.ratio.ln().abs()).total_cmp(&b.ratio.ln().abs()))?;
    let down = worst.ratio < 1.0;
    let moved: Vec<&&BandwidthChange> = of_kind
        .iter()
        .filter(|c| (c.ratio < 1.0) == down && c.ratio.ln().abs() >= min_effect.ln_1p())
        .collect();
    if moved.is_empty() {
        return None;
    }
    let ratios: Vec<f64> = moved.iter().map(|c| c.ratio).collect();
    let low = moved.iter().map(|c| c.payload_bytes).min()?;
    let high = moved.iter().map(|c| c.payload_bytes).max()?;
    Some((low, high, median(&ratios)))
}

/// `64 MiB`, `512 KiB`, `100 B`.
pub fn size(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 || unit == 0 {
        format!("{value:.0} {}", units[unit])
    } else {
        format!("{value:.1} {}", units[unit])
    }
}
