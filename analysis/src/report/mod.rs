//! `analyze`: records in; the tidy store, tables (CSV and printed), plots and a Markdown report
//! out, under `<sweep>/tidy/` and `<sweep>/report/`.

use shardsweep_records::Outcome;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use polars::prelude::*;

use crate::load::{load_points, PointRecords};
use crate::plot::{line_panels, stacked_bars, throughput_bars, Bar, Line, Panel, Stack};
use crate::scaling::add_efficiencies;
use crate::series::{line_label, series_key, Scaling};
use crate::stragglers::{exclude_list, node_scores, NodeScore};
use crate::summary::{summarize, PointSummary, MFU_FORMULA};
use crate::tidy::{update_store, write_atomically, write_file, Skipped, Store, StoreUpdate};
use crate::AnalysisError;

mod figures;
mod markdown;
mod tables;

use figures::plots;
use markdown::{markdown_report, printable};
pub(crate) use tables::write_csv;
use tables::{breakdown_frame, straggler_frame, summary_frame};

/// A node is a straggler when its ranks are this much slower than the typical rank.
pub const STRAGGLER_THRESHOLD: f64 = 0.05;

pub struct Report {
    /// The summary as a printable table.
    pub table: String,
    pub summaries: Vec<PointSummary>,
    pub stragglers: Vec<NodeScore>,
    /// Nodes to leave out of the next submission (`resume --exclude`).
    pub exclude: Vec<String>,
    pub store: StoreUpdate,
    pub files: Vec<PathBuf>,
}

/// Summarises a sweep from its tidy store (brought up to date first).
/// Points' summaries, node straggler scores and what updating the store did (points whose
/// files cannot be read are left out and listed in its `skipped`).
pub fn summarize_sweep(
    sweep_dir: &Path,
) -> Result<(Vec<PointSummary>, Vec<NodeScore>, StoreUpdate), AnalysisError> {
    let _lock = lock_analysis(sweep_dir)?;
    summarize_unlocked(sweep_dir)
}

fn summarize_unlocked(
    sweep_dir: &Path,
) -> Result<(Vec<PointSummary>, Vec<NodeScore>, StoreUpdate), AnalysisError> {
    let (mut points, unreadable) = load_points(sweep_dir)?;
    let mut update = update_store(sweep_dir, &points)?;
    update.skipped.splice(0..0, unreadable);
    points.retain(|p| !update.skipped.iter().any(|s| s.path.starts_with(&p.dir)));
    if points.is_empty() {
        return Err(AnalysisError::Empty(sweep_dir.display().to_string()));
    }
    let (mut summaries, rank_scores) = summarize(&points, &Store::open(&update.dir)?)?;
    // Efficiencies compare points with each other, so they follow the per-point summaries.
    add_efficiencies(&mut summaries);
    Ok((summaries, node_scores(&rank_scores, &points)?, update))
}

/// Holds `<sweep>/.analysis.lock` until dropped: a second analysis of the same sweep waits for
/// the first, then finds the store up to date. Where the file system cannot lock (some NFS
/// and Lustre mounts), the analysis goes on unlocked: every output is written under a name of
/// its own and renamed into place, so concurrent analyses cannot corrupt each other's files.
fn lock_analysis(sweep_dir: &Path) -> Result<Option<std::fs::File>, AnalysisError> {
    let path = shardsweep_records::sweep_dir::analysis_lock_file(sweep_dir);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| AnalysisError::read(&path, e))?;
    Ok(file.lock().is_ok().then_some(file))
}

pub fn analyze_sweep(sweep_dir: &Path) -> Result<Report, AnalysisError> {
    let _lock = lock_analysis(sweep_dir)?;
    let (summaries, stragglers, update) = summarize_unlocked(sweep_dir)?;
    let exclude = exclude_list(&stragglers, STRAGGLER_THRESHOLD);
    let sweep = sweep_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let out = sweep_dir.join("report");
    std::fs::create_dir_all(&out)
        .map_err(|source| AnalysisError::Io { path: out.display().to_string(), source })?;

    let mut files = vec![write_csv(&out.join("summary.csv"), &mut summary_frame(&summaries)?)?];
    files.push(write_csv(&out.join("breakdown.csv"), &mut breakdown_frame(&summaries)?)?);
    files.push(write_csv(&out.join("stragglers.csv"), &mut straggler_frame(&stragglers)?)?);
    files.extend(plots(&out, &sweep, &summaries)?);
    if crate::pipeline::studied(&summaries) {
        files.extend(crate::pipeline::input_pipeline(&out, &sweep, &summaries)?);
    }
    let probes = crate::probe::probes(&summaries);
    if !probes.rows.is_empty() {
        files.push(crate::probe::write_probe_csv(&out, &probes.rows)?);
    }

    let table = printable(&summaries);
    let markdown = out.join("report.md");
    write_file(
        &markdown,
        markdown_report(
            &sweep,
            &summaries,
            &stragglers,
            &exclude,
            &table,
            &update.skipped,
            &probes,
        )
        .as_bytes(),
    )?;
    files.push(markdown);
    Ok(Report { table, summaries, stragglers, exclude, store: update, files })
}

/// `compare`: both result sets summarised, compared, and written to `out` (comparison.csv,
/// comparison.png/.svg, comparison.md).
pub fn compare_sweeps(
    before: &Path,
    after: &Path,
    out: &Path,
    options: &crate::CompareOptions,
) -> Result<(crate::Comparison, Vec<PathBuf>), AnalysisError> {
    let side = |side: &'static str, dir: &Path| {
        summarize_sweep(dir).map(|(s, _, _)| s).map_err(|e| AnalysisError::CompareSide {
            side,
            path: dir.display().to_string(),
            source: Box::new(e),
        })
    };
    let (b, a) = (side("BEFORE", before)?, side("AFTER", after)?);
    let comparison = crate::compare::compare(&b, &a, options)?;
    std::fs::create_dir_all(out)
        .map_err(|source| AnalysisError::Io { path: out.display().to_string(), source })?;
    let c = &comparison.changes;
    let mut frame = df!(
        "point" => c.iter().map(|x| x.point.clone()).collect::<Vec<_>>(),
        "phase" => c.iter().map(|x| x.phase.clone()).collect::<Vec<_>>(),
        "before_s" => c.iter().map(|x| x.before_s).collect::<Vec<_>>(),
        "after_s" => c.iter().map(|x| x.after_s).collect::<Vec<_>>(),
        "ratio" => c.iter().map(|x| x.ratio.estimate).collect::<Vec<_>>(),
        "ratio_ci95_low" => c.iter().map(|x| x.ratio.low).collect::<Vec<_>>(),
        "ratio_ci95_high" => c.iter().map(|x| x.ratio.high).collect::<Vec<_>>(),
        "mann_whitney_p" => c.iter().map(|x| x.p_value).collect::<Vec<_>>(),
        "verdict" => c.iter().map(|x| x.verdict.name()).collect::<Vec<_>>(),
    )?;
    let mut files = vec![write_csv(&out.join("comparison.csv"), &mut frame)?];
    // The plot shows every point's step and any phase with a verdict; the CSV has them all.
    let shown =
        c.iter().filter(|x| x.phase == "step" || x.verdict != crate::Verdict::NoSignificantChange);
    let bars: Vec<Bar> = shown
        .map(|x| Bar {
            label: format!("{} {} [{}]", x.point, x.phase, x.verdict.name()),
            value: x.ratio.estimate,
            low: x.ratio.low,
            high: x.ratio.high,
        })
        .collect();
    let title =
        format!("{} vs {}: time per phase, after / before", after.display(), before.display());
    files.extend(crate::plot::ratio_bars(out, "comparison", &title, &bars)?);
    let mut md = format!("# {} against {}\n\nRatios are after / before of the median over steady steps (slowest rank per step), with 95% bootstrap intervals and Mann-Whitney p-values. A verdict needs the interval to exclude 1, p < {} and a change of at least {:.0}%; anything else is \"no significant change\".\n\n", after.display(), before.display(), options.alpha, options.min_effect * 100.0);
    md += "## Environment\n\n| field | before | after | declared |\n|---|---|---|---|\n";
    for d in &comparison.environment {
        md += &format!(
            "| {} | {} | {} | {} |\n",
            d.field,
            d.before,
            d.after,
            if d.declared { "yes" } else { "**no**" }
        );
    }
    md += "\n![comparison](comparison.svg)\n\n| point | phase | before s | after s | ratio (95% CI) | p | verdict |\n|---|---|---|---|---|---|---|\n";
    for x in c {
        md += &format!(
            "| {} | {} | {:.6} | {:.6} | {:.3} ({:.3}-{:.3}) | {:.2e} | {} |\n",
            x.point,
            x.phase,
            x.before_s,
            x.after_s,
            x.ratio.estimate,
            x.ratio.low,
            x.ratio.high,
            x.p_value,
            x.verdict.name()
        );
    }
    if !comparison.unmatched.is_empty() {
        md += "\n## Not compared\n\n| point | why |\n|---|---|\n";
        for (point, why) in &comparison.unmatched {
            md += &format!("| {point} | {} |\n", why.replace('|', "\\|"));
        }
    }
    let markdown = out.join("comparison.md");
    write_file(&markdown, md.as_bytes())?;
    files.push(markdown);
    Ok((comparison, files))
}
