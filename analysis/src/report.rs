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
    let path = sweep_dir.join(".analysis.lock");
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

    let table = printable(&summaries);
    let markdown = out.join("report.md");
    write_file(
        &markdown,
        markdown_report(&sweep, &summaries, &stragglers, &exclude, &table, &update.skipped)
            .as_bytes(),
    )?;
    files.push(markdown);
    Ok(Report { table, summaries, stragglers, exclude, store: update, files })
}

fn label(p: &PointSummary) -> String {
    if p.meta.outcome == Outcome::Ok {
        p.meta.point.clone()
    } else {
        format!("{} ({})", p.meta.point, p.meta.outcome)
    }
}

fn plots(
    out: &Path,
    sweep: &str,
    summaries: &[PointSummary],
) -> Result<Vec<PathBuf>, AnalysisError> {
    let mut files = Vec::new();
    let bars: Vec<Bar> = summaries
        .iter()
        .map(|p| {
            let batch = f64::from(p.meta.global_batch);
            Bar {
                label: label(p),
                value: p.images_per_s.estimate,
                low: batch / p.step_s_p90,
                high: batch / p.step_s_p10,
            }
        })
        .collect();
    files.extend(throughput_bars(
        out,
        "throughput",
        &format!("{sweep}: training throughput per point"),
        &bars,
    )?);

    let ok: Vec<&PointSummary> =
        summaries.iter().filter(|p| p.meta.outcome == Outcome::Ok).collect();
    let panels = |value: &dyn Fn(&PointSummary) -> Option<f64>, ideal: bool| -> Vec<Panel> {
        let mut models: BTreeMap<&str, Vec<&PointSummary>> = BTreeMap::new();
        for p in &ok {
            models.entry(p.meta.model.as_str()).or_default().push(p);
        }
        let models = models.into_iter().map(|(model, points)| {
            let metas: Vec<&PointRecords> = points.iter().map(|p| &p.meta).collect();
            let mut series: BTreeMap<String, (String, Vec<&PointSummary>)> = BTreeMap::new();
            for p in points {
                let line = series
                    .entry(series_key(&p.meta, Scaling::Weak))
                    .or_insert_with(|| (line_label(&p.meta, &metas), Vec::new()));
                line.1.push(p);
            }
            (model, series.into_values().collect::<Vec<_>>())
        });
        models
            .map(|(model, series)| {
                let mut lines = Vec::new();
                for (name, mut points) in series {
                    points.sort_by_key(|p| p.meta.nodes);
                    let xy: Vec<(f64, f64)> = points
                        .iter()
                        .filter_map(|p| value(p).map(|v| (f64::from(p.meta.nodes), v)))
                        .collect();
                    if ideal && xy.len() > 1 {
                        let (n0, v0) = xy[0];
                        lines.push(Line {
                            name: format!("{name} (ideal)"),
                            points: xy.iter().map(|(n, _)| (*n, v0 * n / n0)).collect(),
                            dashed: true,
                        });
                    }
                    lines.push(Line { name, points: xy, dashed: false });
                }
                Panel { title: model.to_string(), lines }
            })
            .collect()
    };
    if !ok.is_empty() {
        let title =
            format!("{sweep}: throughput vs nodes (dashed: linear scaling from the fewest nodes)");
        files.extend(line_panels(
            out,
            "scaling_throughput",
            &title,
            "images/s",
            &panels(&|p| Some(p.images_per_s.estimate), true),
        )?);
        let title = format!("{sweep}: weak-scaling efficiency vs the fewest nodes");
        files.extend(line_panels(
            out,
            "scaling_efficiency",
            &title,
            "efficiency (1 = ideal)",
            &panels(&|p| p.weak_scaling_efficiency, false),
        )?);
        let title = format!("{sweep}: peak memory per rank vs nodes");
        files.extend(line_panels(
            out,
            "memory",
            &title,
            "GiB per rank (largest peak RSS)",
            &panels(&|p| Some(p.peak_rss_bytes / (1u64 << 30) as f64), false),
        )?);
    }
    // Peak RSS includes libtorch's own baseline, the same for every strategy on CPU and far
    // larger than a small model; the account by category shows what the strategies change,
    // on its own scale, beside the RSS plot.
    let mib = (1u64 << 20) as f64;
    let memory: Vec<Stack> = summaries
        .iter()
        .filter(|p| !p.memory_account_bytes.is_empty())
        .map(|p| Stack {
            label: label(p),
            parts: p.memory_account_bytes.iter().map(|(c, v)| (c.clone(), v / mib)).collect(),
        })
        .collect();
    let title = format!("{sweep}: the harness's memory account per rank, by category (largest)");
    files.extend(stacked_bars(out, "memory_account", &title, "MiB per rank", &memory)?);
    let stacks: Vec<Stack> = summaries
        .iter()
        .filter(|p| !p.step_s.is_empty())
        .map(|p| Stack { label: label(p), parts: p.breakdown.critical_path.clone() })
        .collect();
    let title = format!("{sweep}: where a step goes (slowest rank, mean over steady steps)");
    files.extend(stacked_bars(out, "breakdown", &title, "seconds per step", &stacks)?);
    Ok(files)
}

fn opt(values: impl Iterator<Item = Option<f64>>) -> Vec<Option<f64>> {
    values.collect()
}

fn summary_frame(s: &[PointSummary]) -> Result<DataFrame, AnalysisError> {
    let text = |f: &dyn Fn(&PointSummary) -> String| s.iter().map(f).collect::<Vec<_>>();
    let num = |f: &dyn Fn(&PointSummary) -> f64| s.iter().map(f).collect::<Vec<_>>();
    let count = |f: &dyn Fn(&PointSummary) -> u32| s.iter().map(f).collect::<Vec<_>>();
    Ok(df!(
        "point" => text(&|p| p.meta.point.clone()),
        "model" => text(&|p| p.meta.model.clone()),
        "strategy" => text(&|p| p.meta.strategy.to_string()),
        "shard_group" => count(&|p| p.meta.shard_group),
        "nodes" => count(&|p| p.meta.nodes),
        "ranks_per_node" => count(&|p| p.meta.ranks_per_node),
        "world_size" => count(&|p| p.meta.world_size),
        "micro_batch" => count(&|p| p.meta.micro_batch),
        "global_batch" => num(&|p| f64::from(p.meta.global_batch)),
        "outcome" => text(&|p| p.meta.outcome.to_string()),
        "steady_from" => count(&|p| p.steady_from),
        "steady_steps" => count(&|p| p.step_s.len() as u32),
        "step_s_median" => num(&|p| p.step_s_median.estimate),
        "step_s_ci95_low" => num(&|p| p.step_s_median.low),
        "step_s_ci95_high" => num(&|p| p.step_s_median.high),
        "step_s_p10" => num(&|p| p.step_s_p10),
        "step_s_p90" => num(&|p| p.step_s_p90),
        "images_per_s" => num(&|p| p.images_per_s.estimate),
        "images_per_s_ci95_low" => num(&|p| p.images_per_s.low),
        "images_per_s_ci95_high" => num(&|p| p.images_per_s.high),
        "images_per_s_per_device" => num(&|p| p.images_per_s_per_device()),
        "model_flop_per_s" => num(&|p| p.model_flop_per_s),
        "mfu" => opt(s.iter().map(|p| p.mfu)),
        "peak_flop_per_s_per_device" => opt(s.iter().map(|p| p.meta.peak_flop_per_s)),
        "peak_source" => text(&|p| p.meta.peak_source.clone()),
        "mfu_formula" => text(&|_| MFU_FORMULA.to_string()),
        "weak_scaling_efficiency" => opt(s.iter().map(|p| p.weak_scaling_efficiency)),
        "strong_scaling_efficiency" => opt(s.iter().map(|p| p.strong_scaling_efficiency)),
        "peak_rss_bytes" => num(&|p| p.peak_rss_bytes),
        "accounted_peak_bytes" => num(&|p| p.accounted_peak_bytes),
        "final_loss" => num(&|p| p.final_loss),
        "loader_workers" => count(&|p| p.meta.loader_workers),
        "data" => text(&|p| p.meta.data.clone()),
        "loader_images_per_worker_s" => opt(s.iter().map(|p| p.loader_images_per_worker_s)),
        "loader_images_per_s" => opt(s.iter().map(|p| p.loader_images_per_s)),
        "data_share" => opt(s.iter().map(|p| p.data_share)),
    )?)
}

fn breakdown_frame(s: &[PointSummary]) -> Result<DataFrame, AnalysisError> {
    let (mut point, mut view, mut component, mut seconds) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for p in s {
        for (name, parts) in [
            ("critical_path", &p.breakdown.critical_path),
            ("max_over_ranks", &p.breakdown.max_over_ranks),
        ] {
            for (c, v) in parts {
                point.push(p.meta.point.clone());
                view.push(name);
                component.push(c.clone());
                seconds.push(*v);
            }
        }
    }
    Ok(
        df!("point" => point, "view" => view, "component" => component, "seconds_per_step" => seconds)?,
    )
}

fn straggler_frame(s: &[NodeScore]) -> Result<DataFrame, AnalysisError> {
    Ok(df!(
        "hostname" => s.iter().map(|n| n.hostname.clone()).collect::<Vec<_>>(),
        "score" => s.iter().map(|n| n.score).collect::<Vec<_>>(),
        "worst_rank_score" => s.iter().map(|n| n.worst_score).collect::<Vec<_>>(),
        "rank_points" => s.iter().map(|n| n.rank_points as u32).collect::<Vec<_>>(),
    )?)
}

pub(crate) fn write_csv(path: &Path, table: &mut DataFrame) -> Result<PathBuf, AnalysisError> {
    write_atomically(path, |file| Ok(CsvWriter::new(file).finish(table)?))?;
    Ok(path.to_path_buf())
}

fn fmt(v: Option<f64>, digits: usize) -> String {
    v.filter(|x| x.is_finite()).map_or("-".into(), |x| format!("{x:.digits$}"))
}

fn printable(s: &[PointSummary]) -> String {
    let mut out = Table::new();
    out.load_preset(UTF8_FULL_CONDENSED).set_header([
        "point",
        "outcome",
        "steady",
        "step s (95% CI)",
        "images/s",
        "per device",
        "TFLOP/s",
        "MFU",
        "weak eff.",
        "strong eff.",
    ]);
    for p in s {
        out.add_row([
            p.meta.point.clone(),
            p.meta.outcome.to_string(),
            format!("{} from {}", p.step_s.len(), p.steady_from),
            format!(
                "{} ({}-{})",
                fmt(Some(p.step_s_median.estimate), 4),
                fmt(Some(p.step_s_median.low), 4),
                fmt(Some(p.step_s_median.high), 4)
            ),
            fmt(Some(p.images_per_s.estimate), 1),
            fmt(Some(p.images_per_s_per_device()), 1),
            fmt(Some(p.model_flop_per_s / 1e12), 4),
            p.mfu.map_or("-".into(), |m| format!("{:.1}%", m * 100.0)),
            fmt(p.weak_scaling_efficiency, 3),
            fmt(p.strong_scaling_efficiency, 3),
        ]);
    }
    out.to_string()
}

fn markdown_report(
    sweep: &str,
    s: &[PointSummary],
    stragglers: &[NodeScore],
    exclude: &[String],
    table: &str,
    skipped: &[Skipped],
) -> String {
    let mut md = format!("# Sweep {sweep}\n\n{} points. Step times are the slowest rank's (a step waits for it), summarised over steady-state steps: the experiment's warm-up steps are always dropped, and the MSER-5 rule drops any further slow start. Intervals are 95% bootstrap intervals of the median.\n\n", s.len());
    md += &format!("```\n{table}\n```\n\nMFU: {MFU_FORMULA}. Peaks per device come from the system profile, or for local runs from this machine's measured matrix-multiply rate ({}).\n\n", {
        let sources: Vec<&str> = s.iter().map(|p| p.meta.peak_source.as_str()).filter(|x| !x.is_empty()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        if sources.is_empty() { "none known for these runs: MFU is left out".to_string() } else { sources.join("; ") }
    });
    md += "## Throughput\n\n![throughput](throughput.svg)\n\n";
    if s.iter().any(|p| p.meta.outcome == Outcome::Ok) {
        md += "## Scaling\n\n![throughput vs nodes](scaling_throughput.svg)\n\n![weak-scaling efficiency](scaling_efficiency.svg)\n\n## Memory\n\nPeak RSS per rank (libtorch's own baseline included, which on CPU is much the same for every strategy), and beside it the harness's account of what the strategies change: parameter and gradient shards, optimizer state, and the peaks of gathered parameters, unsharded gradients and activations.\n\n![peak memory](memory.svg)\n\n![memory account](memory_account.svg)\n\n";
    }
    if crate::pipeline::studied(s) {
        md += "## Input pipeline\n\nImages/s of training (global batch / median steady step) and of the loader alone (images per second of its workers' read, decode and augment time, x ranks x workers: the rate with every worker busy) against the loader's worker threads per rank. Where the loader alone is below training, the step waits for data (`data_share` in `summary.csv`).\n\n![input pipeline](input_pipeline.svg)\n\n";
    }
    md += "## Where the time goes\n\nCritical path: the phases of the slowest rank, mean over steady steps, in seconds per step; they add up to its step time (`other` is time in no phase). Max over ranks (in `breakdown.csv`) bounds each component from above.\n\n![breakdown](breakdown.svg)\n\n";
    md += &breakdown_table(s);
    md += "\n## Stragglers\n\nScore: a node's ranks' forward time over the median rank's in the same step (median over steps, ranks and points).\n\n| node | score | worst rank | rank-points |\n|---|---|---|---|\n";
    for n in stragglers {
        md += &format!(
            "| {} | {:.3} | {:.3} | {} |\n",
            n.hostname, n.score, n.worst_score, n.rank_points
        );
    }
    md += &if exclude.is_empty() {
        format!(
            "\nNo node is more than {:.0}% slower than the typical rank.\n",
            STRAGGLER_THRESHOLD * 100.0
        )
    } else {
        format!(
            "\nSlow nodes (> {:.0}%): resume with `--exclude {}`.\n",
            STRAGGLER_THRESHOLD * 100.0,
            exclude.join(",")
        )
    };
    if !skipped.is_empty() {
        md += "\n## Points not analysed\n\nTheir files cannot be read; every other point is analysed.\n\n| file | why |\n|---|---|\n";
        for skip in skipped {
            let why = skip.reason.replace('|', "\\|").replace('\n', " ");
            md += &format!("| {} | {} |\n", skip.path.display(), why);
        }
    }
    md += "\nTables: [summary.csv](summary.csv), [breakdown.csv](breakdown.csv), [stragglers.csv](stragglers.csv). Long-format records: `../tidy/*.parquet`.\n";
    md
}

/// The critical path as a Markdown table: one row per point, one column per component (in
/// the order components first appear), `-` where a point has no such component.
fn breakdown_table(s: &[PointSummary]) -> String {
    let mut components: Vec<&str> = Vec::new();
    for (c, _) in s.iter().flat_map(|p| &p.breakdown.critical_path) {
        if !components.contains(&c.as_str()) {
            components.push(c);
        }
    }
    let mut md = format!("| point | {} |\n", components.join(" | "));
    md += &format!("|---|{}\n", "---|".repeat(components.len()));
    for p in s.iter().filter(|p| !p.breakdown.critical_path.is_empty()) {
        let cells: Vec<String> = components
            .iter()
            .map(|c| {
                let v = p.breakdown.critical_path.iter().find(|(name, _)| name == c);
                v.map_or("-".into(), |(_, v)| format!("{v:.6}"))
            })
            .collect();
        md += &format!("| {} | {} |\n", p.meta.point, cells.join(" | "));
    }
    md
}

/// `compare`: both result sets summarised, compared, and written to `out` (comparison.csv,
/// comparison.png/.svg, comparison.md).
pub fn compare_sweeps(
    before: &Path,
    after: &Path,
    out: &Path,
    options: &crate::CompareOptions,
) -> Result<(crate::Comparison, Vec<PathBuf>), AnalysisError> {
    let (b, _, _) = summarize_sweep(before)?;
    let (a, _, _) = summarize_sweep(after)?;
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
    for (point, why) in &comparison.unmatched {
        md += &format!("\nNot compared: {point} ({why})");
    }
    let markdown = out.join("comparison.md");
    write_file(&markdown, md.as_bytes())?;
    files.push(markdown);
    Ok((comparison, files))
}
