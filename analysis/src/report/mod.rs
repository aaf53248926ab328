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

mod compare;
mod figures;
mod markdown;
mod tables;

pub use compare::{compare_sweeps, write_junit};
use figures::plots;
use markdown::{markdown_report, printable};
pub(crate) use tables::write_csv;
use tables::{breakdown_frame, straggler_frame, summary_frame};

/// A node is a straggler when its ranks are this much slower than the typical rank.
pub const STRAGGLER_THRESHOLD: f64 = 0.05;

/// The nodes whose ranks compute more than [`STRAGGLER_THRESHOLD`] slower than the typical
/// rank, by the analysis of `sweep_dir`'s finished records, with their scores; `None` when the
/// sweep has no finished record yet (a first submission: no node is known to be slow).
///
/// # Errors
/// The analysis's, except that of a sweep with nothing to analyse.
pub fn slow_nodes(sweep_dir: &Path) -> Result<Option<Vec<NodeScore>>, AnalysisError> {
    let summary = if sweep_dir.is_dir() {
        summarize_sweep(sweep_dir)
    } else {
        Err(AnalysisError::Empty(sweep_dir.to_path_buf()))
    };
    match summary {
        Ok((_, nodes, _)) => {
            let slow = exclude_list(&nodes, STRAGGLER_THRESHOLD);
            Ok(Some(nodes.into_iter().filter(|n| slow.contains(&n.hostname)).collect()))
        }
        Err(AnalysisError::Empty(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

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
        return Err(AnalysisError::Empty(sweep_dir.to_path_buf()));
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
        .map_err(|source| AnalysisError::Io { path: out.to_path_buf(), source })?;

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
