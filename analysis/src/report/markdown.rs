//! The report's text: the printed summary table and `report.md`. A figure that is missing
//! (NaN: a median of no steady step) or does not apply (no peak known, one node count) is
//! written "n/a", never as a number, and the table says why below it.

use super::*;

/// What the report writes for a figure it does not have.
pub(crate) const NO_FIGURE: &str = "n/a";

pub(crate) fn fmt(v: Option<f64>, digits: usize) -> String {
    v.filter(|x| x.is_finite()).map_or(NO_FIGURE.into(), |x| format!("{x:.digits$}"))
}

/// The lines under a table that say why points have no figures, one per such point.
pub(crate) fn why_no_figures(s: &[PointSummary]) -> String {
    s.iter()
        .filter_map(|p| {
            Some(format!("{}: {NO_FIGURE}: {}\n", p.meta.point, p.no_figures_reason()?))
        })
        .collect()
}

pub(super) fn printable(s: &[PointSummary]) -> String {
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
            if p.step_s.is_empty() {
                format!("none of {}", p.steps_recorded)
            } else {
                format!("{} from {}", p.step_s.len(), p.steady_from)
            },
            format!(
                "{} ({}-{})",
                fmt(Some(p.step_s_median.estimate), 4),
                fmt(Some(p.step_s_median.low), 4),
                fmt(Some(p.step_s_median.high), 4)
            ),
            fmt(Some(p.images_per_s.estimate), 1),
            fmt(Some(p.images_per_s_per_device()), 1),
            fmt(Some(p.model_flop_per_s / 1e12), 4),
            p.mfu
                .filter(|m| m.is_finite())
                .map_or(NO_FIGURE.into(), |m| format!("{:.1}%", m * 100.0)),
            fmt(p.weak_scaling_efficiency, 3),
            fmt(p.strong_scaling_efficiency, 3),
        ]);
    }
    format!("{out}\n{}", why_no_figures(s)).trim_end().to_string()
}

pub(super) fn markdown_report(
    sweep: &str,
    s: &[PointSummary],
    stragglers: &[NodeScore],
    exclude: &[String],
    table: &str,
    skipped: &[Skipped],
    probes: &crate::probe::Probes,
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
    if !probes.is_empty() {
        md += &crate::probe::probe_section(probes);
    }
    md += "## Where the time goes\n\nCritical path: the phases of the slowest rank, mean over steady steps, in seconds per step; they add up to its step time (`other` is time in no phase). Max over ranks (in `breakdown.csv`) bounds each component from above.\n\n![breakdown](breakdown.svg)\n\n";
    md += &breakdown_table(s);
    md += "\n## Stragglers\n\nScore: a node's ranks' forward time over the median rank's in the same step (median over steps, ranks and points).\n\n| node | score | worst rank | rank-points |\n|---|---|---|---|\n";
    for n in stragglers {
        md += &format!(
            "| {} | {} | {} | {} |\n",
            n.hostname,
            fmt(Some(n.score), 3),
            fmt(Some(n.worst_score), 3),
            n.rank_points
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
/// the order components first appear), `-` where a point has no such component and "n/a"
/// where it has no figure (no steady step; the reason follows the table).
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
                v.map_or("-".into(), |(_, v)| fmt(Some(*v), 6))
            })
            .collect();
        md += &format!("| {} | {} |\n", p.meta.point, cells.join(" | "));
    }
    let why = why_no_figures(s);
    if !why.is_empty() {
        md += &format!("\n{}", why.lines().map(|l| format!("- {l}\n")).collect::<String>());
    }
    md
}
