//! Linear-probe accuracy against model size: what `shardsweep probe` left in each point's
//! folder (`probe.json` for the trained encoder, `probe-random-init.json` for the untrained
//! one), one row per point that has either.

use std::path::{Path, PathBuf};

use polars::prelude::*;
use shardsweep_records::{read_json, Encoder, ProbeResult};

use crate::report::write_csv;
use crate::summary::PointSummary;
use crate::AnalysisError;

/// One point's probes.
pub(crate) struct ProbeRow {
    pub point: String,
    pub model: String,
    /// Training FLOP per image: the model's size as the cost of one image.
    pub train_flop_per_image: f64,
    pub pretrained: Option<ProbeResult>,
    pub random_init: Option<ProbeResult>,
}

impl ProbeRow {
    /// Top-1 of the trained encoder minus the untrained one's, where both were probed.
    pub fn top1_gain(&self) -> Option<f64> {
        Some(self.pretrained.as_ref()?.top1 - self.random_init.as_ref()?.top1)
    }
}

/// The probes of `summaries`' points, smallest model first, and the probe files that cannot be
/// read with the reason (left out, as unreadable points are).
pub(crate) fn probes(summaries: &[PointSummary]) -> Probes {
    let mut probes = Probes::default();
    for p in summaries {
        let mut read = |encoder: Encoder| {
            let path = p.meta.dir.join(encoder.result_file());
            if !path.exists() {
                return None;
            }
            read_json(&path).map_err(|e| probes.unreadable.push((path, e.to_string()))).ok()
        };
        let (pretrained, random_init) = (read(Encoder::Pretrained), read(Encoder::RandomInit));
        if pretrained.is_none() && random_init.is_none() {
            continue;
        }
        probes.rows.push(ProbeRow {
            point: p.meta.point.clone(),
            model: p.meta.model.clone(),
            train_flop_per_image: p.meta.train_flop_per_step / f64::from(p.meta.global_batch),
            pretrained,
            random_init,
        });
    }
    probes.rows.sort_by(|a, b| a.train_flop_per_image.total_cmp(&b.train_flop_per_image));
    probes
}

/// What the sweep's points hold of probes.
#[derive(Default)]
pub(crate) struct Probes {
    pub rows: Vec<ProbeRow>,
    pub unreadable: Vec<(PathBuf, String)>,
}

impl Probes {
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.unreadable.is_empty()
    }
}

/// `probe.csv`: one row per point, accuracies as fractions.
pub(crate) fn write_probe_csv(out: &Path, rows: &[ProbeRow]) -> Result<PathBuf, AnalysisError> {
    let acc = |f: &dyn Fn(&ProbeRow) -> Option<f64>| rows.iter().map(f).collect::<Vec<_>>();
    let mut frame = df!(
        "point" => rows.iter().map(|r| r.point.clone()).collect::<Vec<_>>(),
        "model" => rows.iter().map(|r| r.model.clone()).collect::<Vec<_>>(),
        "train_flop_per_image" => rows.iter().map(|r| r.train_flop_per_image).collect::<Vec<_>>(),
        "pool" => rows.iter().map(|r| pool(r).to_string()).collect::<Vec<_>>(),
        "pretrained_top1" => acc(&|r| r.pretrained.as_ref().map(|p| p.top1)),
        "pretrained_top5" => acc(&|r| r.pretrained.as_ref().map(|p| p.top5)),
        "random_init_top1" => acc(&|r| r.random_init.as_ref().map(|p| p.top1)),
        "random_init_top5" => acc(&|r| r.random_init.as_ref().map(|p| p.top5)),
        "top1_gain" => acc(&|r| r.top1_gain()),
    )?;
    write_csv(&out.join("probe.csv"), &mut frame)
}

/// The report's section: accuracy against model size.
pub(crate) fn probe_section(probes: &Probes) -> String {
    let rows = &probes.rows;
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1}%", 100.0 * v));
    let data = rows
        .iter()
        .find_map(|r| r.pretrained.as_ref().or(r.random_init.as_ref()))
        .map_or(String::new(), |p| format!(" on {} ({} val images)", p.data, p.val_images));
    let mut md = format!("## Linear probe\n\nTop-1 / top-5 accuracy of a linear classifier on frozen encoder features{data}, for each model's trained encoder and for the same encoder at its initialisation (the baseline a pretraining must beat). Smallest model first. Table: [probe.csv](probe.csv).\n\n| model | training GFLOP/image | features | pretrained top-1 | top-5 | random init top-1 | top-5 | top-1 gain |\n|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let (p, q) = (r.pretrained.as_ref(), r.random_init.as_ref());
        md += &format!(
            "| {} | {:.3} | {} | {} | {} | {} | {} | {} |\n",
            r.model,
            r.train_flop_per_image / 1e9,
            pool(r),
            pct(p.map(|p| p.top1)),
            pct(p.map(|p| p.top5)),
            pct(q.map(|q| q.top1)),
            pct(q.map(|q| q.top5)),
            r.top1_gain().map_or("-".to_string(), |g| format!("{:+.1} points", 100.0 * g)),
        );
    }
    for (path, why) in &probes.unreadable {
        md +=
            &format!("\nLeft out: {} cannot be read: {}\n", path.display(), why.replace('\n', " "));
    }
    md + "\n"
}

/// The features probed (the pretrained probe's, else the baseline's).
fn pool(r: &ProbeRow) -> &'static str {
    r.pretrained.as_ref().or(r.random_init.as_ref()).map_or("-", |p| p.pool.name())
}
