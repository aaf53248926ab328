//! `compare`'s files: the verdicts (CSV, JSON lines, JUnit XML), the decomposition and the
//! collectives' bus bandwidth (CSV), figures (ratios, scaling before and after, a heat map of
//! changes per model) and a Markdown report that opens with what changed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::markdown::fmt;
use super::{summarize_sweep, write_csv};
use crate::compare::decision::configuration;
use crate::compare::{
    busbw, compare, CompareOptions, Comparison, Decomposition, PhaseChange, Verdict,
};
use crate::plot::{heat_maps, line_panels, ratio_bars, Bar, HeatMap, Line, Panel, Tone};
use crate::summary::PointSummary;
use crate::tidy::write_file;
use crate::AnalysisError;

/// Both result sets summarised, compared, and written to `out`.
///
/// # Errors
/// Either side's analysis errors (naming the side and folder), [`compare`]'s, and write errors.
pub fn compare_sweeps(
    before: &Path,
    after: &Path,
    out: &Path,
    options: &CompareOptions,
) -> Result<(Comparison, Vec<PathBuf>), AnalysisError> {
    let side = |side: &'static str, dir: &Path| {
        summarize_sweep(dir).map(|(s, _, _)| s).map_err(|e| AnalysisError::CompareSide {
            side,
            path: dir.to_path_buf(),
            source: Box::new(e),
        })
    };
    let (b, a) = (side("BEFORE", before)?, side("AFTER", after)?);
    let comparison = compare(&b, &a, options)?;
    std::fs::create_dir_all(out)
        .map_err(|source| AnalysisError::Io { path: out.to_path_buf(), source })?;
    let mut files = tables(&comparison, out)?;
    files.push(write_junit(&comparison, &out.join("comparison.junit.xml"))?);
    files.extend(figures(&comparison, &b, &a, out, before, after)?);
    let markdown = out.join("comparison.md");
    write_file(&markdown, report(&comparison, before, after, options).as_bytes())?;
    files.push(markdown);
    Ok((comparison, files))
}

fn tables(c: &Comparison, out: &Path) -> Result<Vec<PathBuf>, AnalysisError> {
    let x = &c.changes;
    let mut frame = df!(
        "point" => x.iter().map(|x| x.point.clone()).collect::<Vec<_>>(),
        "phase" => x.iter().map(|x| x.phase.clone()).collect::<Vec<_>>(),
        "before_s" => x.iter().map(|x| x.before_s).collect::<Vec<_>>(),
        "after_s" => x.iter().map(|x| x.after_s).collect::<Vec<_>>(),
        "ratio" => x.iter().map(|x| x.ratio.estimate).collect::<Vec<_>>(),
        "ratio_ci95_low" => x.iter().map(|x| x.ratio.low).collect::<Vec<_>>(),
        "ratio_ci95_high" => x.iter().map(|x| x.ratio.high).collect::<Vec<_>>(),
        "p_value" => x.iter().map(|x| x.p_value).collect::<Vec<_>>(),
        "q_value" => x.iter().map(|x| x.q_value).collect::<Vec<_>>(),
        "steps_before" => x.iter().map(|x| x.steps.0 as u32).collect::<Vec<_>>(),
        "steps_after" => x.iter().map(|x| x.steps.1 as u32).collect::<Vec<_>>(),
        "verdict" => x.iter().map(|x| x.verdict.name()).collect::<Vec<_>>(),
        "reason" => x.iter().map(|x| x.reason.clone()).collect::<Vec<_>>(),
    )?;
    let mut files = vec![write_csv(&out.join("comparison.csv"), &mut frame)?];
    // JSON lines: one record per point and metric, for dashboards; no figure is null.
    let finite = |v: f64| v.is_finite().then_some(v);
    let lines: String = x
        .iter()
        .map(|x| {
            serde_json::json!({
                "point": x.point, "metric": x.phase, "unit": if x.phase == "outcome" { "" } else { "s" },
                "before": finite(x.before_s), "after": finite(x.after_s),
                "ratio": finite(x.ratio.estimate), "ratio_low": finite(x.ratio.low), "ratio_high": finite(x.ratio.high),
                "p_value": finite(x.p_value), "q_value": finite(x.q_value),
                "steps_before": x.steps.0, "steps_after": x.steps.1,
                "verdict": x.verdict, "reason": x.reason,
            })
            .to_string()
                + "\n"
        })
        .collect();
    let jsonl = out.join("comparison.jsonl");
    write_file(&jsonl, lines.as_bytes())?;
    files.push(jsonl);
    let parts: Vec<(&Decomposition, &crate::compare::decompose::Part)> =
        c.decompositions.iter().flat_map(|d| d.parts.iter().map(move |p| (d, p))).collect();
    let mut frame = df!(
        "point" => parts.iter().map(|p| p.0.point.clone()).collect::<Vec<_>>(),
        "step_before_s" => parts.iter().map(|p| p.0.step_before_s).collect::<Vec<_>>(),
        "step_after_s" => parts.iter().map(|p| p.0.step_after_s).collect::<Vec<_>>(),
        "component" => parts.iter().map(|p| p.1.component.clone()).collect::<Vec<_>>(),
        "before_s" => parts.iter().map(|p| p.1.before_s).collect::<Vec<_>>(),
        "after_s" => parts.iter().map(|p| p.1.after_s).collect::<Vec<_>>(),
        "delta_s" => parts.iter().map(|p| p.1.delta_s).collect::<Vec<_>>(),
        "share_of_change" => parts.iter().map(|p| p.1.share_of_change).collect::<Vec<_>>(),
        "points_of_step" => parts.iter().map(|p| p.1.points_of_step).collect::<Vec<_>>(),
    )?;
    files.push(write_csv(&out.join("decomposition.csv"), &mut frame)?);
    let bw = &c.bandwidth;
    let mut frame = df!(
        "point" => bw.iter().map(|b| b.point.clone()).collect::<Vec<_>>(),
        "collective" => bw.iter().map(|b| b.kind.clone()).collect::<Vec<_>>(),
        "group_size" => bw.iter().map(|b| b.group_size).collect::<Vec<_>>(),
        "payload_bytes" => bw.iter().map(|b| b.payload_bytes).collect::<Vec<_>>(),
        "calls_before" => bw.iter().map(|b| b.calls_before as u64).collect::<Vec<_>>(),
        "calls_after" => bw.iter().map(|b| b.calls_after as u64).collect::<Vec<_>>(),
        "bus_bytes_per_s_before" => bw.iter().map(|b| b.bus_bytes_per_s_before).collect::<Vec<_>>(),
        "bus_bytes_per_s_after" => bw.iter().map(|b| b.bus_bytes_per_s_after).collect::<Vec<_>>(),
        "ratio" => bw.iter().map(|b| b.ratio).collect::<Vec<_>>(),
    )?;
    files.push(write_csv(&out.join("bandwidth.csv"), &mut frame)?);
    Ok(files)
}

/// The verdicts as JUnit XML: a suite per point, a case per metric; "regressed" is a
/// failure, "insufficient evidence" is skipped, the rest pass.
///
/// # Errors
/// Writing `path`.
pub fn write_junit(c: &Comparison, path: &Path) -> Result<PathBuf, AnalysisError> {
    let mut report = Report::new("shardsweep compare");
    let mut suites: BTreeMap<&str, TestSuite> = BTreeMap::new();
    for x in &c.changes {
        let status = match x.verdict {
            Verdict::Regressed => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(regression_message(x));
                s.set_type("regressed");
                s
            }
            Verdict::InsufficientEvidence => {
                let mut s = TestCaseStatus::skipped();
                s.set_message(format!("insufficient evidence: {}", x.reason));
                s
            }
            Verdict::Improved | Verdict::Indistinguishable => TestCaseStatus::success(),
        };
        let mut case = TestCase::new(x.phase.clone(), status);
        case.set_classname(x.point.clone());
        suites
            .entry(&x.point)
            .or_insert_with(|| TestSuite::new(x.point.clone()))
            .add_test_case(case);
    }
    for (point, why) in &c.unmatched {
        let mut status = TestCaseStatus::skipped();
        status.set_message(format!("not compared: {why}"));
        let mut case = TestCase::new("step", status);
        case.set_classname(point.clone());
        suites.entry(point).or_insert_with(|| TestSuite::new(point.clone())).add_test_case(case);
    }
    report.add_test_suites(suites.into_values());
    let xml = report.to_string().map_err(|e| AnalysisError::read(path, e))?;
    write_file(path, xml.as_bytes())?;
    Ok(path.to_path_buf())
}

fn regression_message(x: &PhaseChange) -> String {
    if x.phase == "outcome" {
        return format!("outcome regressed: {}", x.reason);
    }
    format!(
        "{} {:.1}% slower: {:.6} s -> {:.6} s (95% interval of the ratio {:.3}-{:.3}, q = {:.2e})",
        x.phase,
        (x.ratio.estimate - 1.0) * 100.0,
        x.before_s,
        x.after_s,
        x.ratio.low,
        x.ratio.high,
        x.q_value
    )
}

fn figures(
    c: &Comparison,
    b: &[PointSummary],
    a: &[PointSummary],
    out: &Path,
    before: &Path,
    after: &Path,
) -> Result<Vec<PathBuf>, AnalysisError> {
    // Every point's step and any phase with a change; the CSV has them all.
    let bars: Vec<Bar> = c
        .changes
        .iter()
        .filter(|x| x.phase != "outcome" && (x.phase == "step" || x.verdict.is_change()))
        .map(|x| Bar {
            label: format!("{} {} [{}]", x.point, x.phase, x.verdict.name()),
            value: x.ratio.estimate,
            low: x.ratio.low,
            high: x.ratio.high,
        })
        .collect();
    let title =
        format!("{} vs {}: time per phase, after / before", after.display(), before.display());
    let mut files = ratio_bars(out, "comparison", &title, &bars)?;
    let models: Vec<String> = {
        let mut m: Vec<String> = b.iter().map(|p| p.meta.model.clone()).collect();
        m.sort();
        m.dedup();
        m
    };
    // Scaling before (dashed) and after (solid), per model and configuration.
    let curve = |side: &[PointSummary], model: &str, name: &str| -> Vec<(f64, f64)> {
        let mut points: Vec<(f64, f64)> = side
            .iter()
            .filter(|p| {
                p.meta.model == model && configuration(p) == name && p.no_figures_reason().is_none()
            })
            .map(|p| (f64::from(p.meta.nodes), p.images_per_s.estimate))
            .collect();
        points.sort_by(|x, y| x.0.total_cmp(&y.0));
        points
    };
    let panels: Vec<Panel> = models
        .iter()
        .map(|model| {
            let mut names: Vec<String> =
                b.iter().filter(|p| p.meta.model == *model).map(configuration).collect();
            names.sort();
            names.dedup();
            let lines = names
                .iter()
                .flat_map(|name| {
                    [
                        Line {
                            name: format!("{name} (before)"),
                            points: curve(b, model, name),
                            dashed: true,
                        },
                        Line { name: name.clone(), points: curve(a, model, name), dashed: false },
                    ]
                })
                .collect();
            Panel { title: model.clone(), lines }
        })
        .collect();
    files.extend(line_panels(
        out,
        "scaling-before-after",
        "Throughput before (dashed) and after (solid)",
        "images/s (median over steady steps)",
        &panels,
    )?);
    files.extend(heat_maps(
        out,
        "changes",
        "Step time after / before, where it changed",
        &heat(c, b, &models),
    )?);
    Ok(files)
}

/// Per model, the step verdict of every (configuration, nodes) cell.
fn heat(c: &Comparison, b: &[PointSummary], models: &[String]) -> Vec<HeatMap> {
    let verdicts = c.step_verdicts();
    models
        .iter()
        .map(|model| {
            let of_model: Vec<&PointSummary> =
                b.iter().filter(|p| p.meta.model == *model).collect();
            let mut rows: Vec<String> = of_model.iter().map(|p| configuration(p)).collect();
            rows.sort();
            rows.dedup();
            let mut nodes: Vec<u32> = of_model.iter().map(|p| p.meta.nodes).collect();
            nodes.sort();
            nodes.dedup();
            let cells = of_model
                .iter()
                .map(|p| {
                    let row = rows.iter().position(|r| *r == configuration(p)).unwrap_or(0);
                    let column = nodes.iter().position(|n| *n == p.meta.nodes).unwrap_or(0);
                    let (tone, text) = match verdicts.get(p.meta.point.as_str()) {
                        Some(x) if x.phase == "outcome" => (Tone::Unknown, x.reason.clone()),
                        Some(x) if x.verdict.is_change() => {
                            (Tone::Changed(x.ratio.estimate), format!("{:.2}x", x.ratio.estimate))
                        }
                        Some(x) if x.verdict == Verdict::Indistinguishable => {
                            (Tone::Indistinguishable, "=".into())
                        }
                        _ => (Tone::Unknown, "?".into()),
                    };
                    (row, column, tone, text)
                })
                .collect();
            HeatMap {
                title: model.clone(),
                rows,
                columns: nodes.iter().map(u32::to_string).collect(),
                cells,
            }
        })
        .collect()
}

fn report(c: &Comparison, before: &Path, after: &Path, o: &CompareOptions) -> String {
    let mut md = format!("# {} against {}\n\n", after.display(), before.display());
    md += "## What changed\n\n";
    if c.environment.is_empty() {
        md += "Nothing in the environments differs.\n\n";
    } else {
        md += "| field | before | after | counts as |\n|---|---|---|---|\n";
        for d in &c.environment {
            md += &format!(
                "| {} | {} | {} | {} |\n",
                d.field,
                cell(&d.before),
                cell(&d.after),
                d.change.name()
            );
        }
        md += "\n";
    }
    let counts: Vec<String> = c.counts().iter().map(|(v, n)| format!("{n} {}", v.name())).collect();
    md += &format!("## Verdicts\n\n{}.\n\nEach metric is the slowest rank's time per steady step; the change is the ratio of medians (after / before) with a 95% circular-block-bootstrap interval. A change is \"regressed\" or \"improved\" when its Benjamini-Hochberg adjusted p-value is at most {} (the false-discovery rate over all {} tests) and it is at least {:.0}% of the metric and {:.0}% of the step; \"indistinguishable\" when the interval rules such a change out; else \"insufficient evidence\" (or fewer than {} steady steps a side).\n\n", counts.join(", "), o.fdr, c.changes.len(), o.min_effect * 100.0, o.min_step_share * 100.0, o.min_steps);
    for line in &c.findings {
        md += &format!("- {line}\n");
    }
    if !c.best.is_empty() || !c.outcomes.is_empty() {
        md += "\n## What it changes in the decision\n\n";
        for x in &c.best {
            md += &format!(
                "- {} at {} nodes: the best was {} ({:.1} images/s), now {} ({:.1} images/s).\n",
                x.model, x.nodes, x.before, x.before_images_per_s, x.after, x.after_images_per_s
            );
        }
        for x in &c.outcomes {
            md +=
                &format!("- {}: {} before, {} after.\n", x.point, x.before.name(), x.after.name());
        }
    }
    md += "\n![changes](changes.svg)\n\n![scaling](scaling-before-after.svg)\n\n![comparison](comparison.svg)\n\n";
    md += "## Per point and metric\n\n| point | metric | before s | after s | ratio (95% CI) | q | verdict | why |\n|---|---|---|---|---|---|---|---|\n";
    for x in &c.changes {
        let ratio = if x.ratio.estimate.is_finite() {
            format!("{:.3} ({:.3}-{:.3})", x.ratio.estimate, x.ratio.low, x.ratio.high)
        } else {
            "n/a".into()
        };
        let q = if x.q_value.is_finite() { format!("{:.2e}", x.q_value) } else { "n/a".into() };
        let (b, a) = (fmt(Some(x.before_s), 6), fmt(Some(x.after_s), 6));
        let (point, phase, verdict) = (&x.point, &x.phase, x.verdict.name());
        md += &format!(
            "| {point} | {phase} | {b} | {a} | {ratio} | {q} | {verdict} | {} |\n",
            cell(&x.reason)
        );
    }
    md += "\n## Where the step time went (mean steady step, slowest rank)\n\n| point | component | before s | after s | change s | share of change | points of step |\n|---|---|---|---|---|---|---|\n";
    for d in &c.decompositions {
        for p in &d.parts {
            md += &format!(
                "| {} | {} | {:.6} | {:.6} | {:+.6} | {:.1}% | {:+.2} |\n",
                d.point,
                p.component,
                p.before_s,
                p.after_s,
                p.delta_s,
                p.share_of_change * 100.0,
                p.points_of_step * 100.0
            );
        }
    }
    if !c.bandwidth.is_empty() {
        md += "\n## Collectives: bus bandwidth (nccl-tests' convention), the largest changes\n\n| point | collective | ranks | size | before GB/s | after GB/s | after / before |\n|---|---|---|---|---|---|---|\n";
        let mut bw: Vec<&busbw::BandwidthChange> = c.bandwidth.iter().collect();
        bw.sort_by(|x, y| y.ratio.ln().abs().total_cmp(&x.ratio.ln().abs()));
        for b in bw.iter().take(20) {
            md += &format!(
                "| {} | {} | {} | {} | {:.3} | {:.3} | {:.3} |\n",
                b.point,
                b.kind,
                b.group_size,
                busbw::size(b.payload_bytes),
                b.bus_bytes_per_s_before / 1e9,
                b.bus_bytes_per_s_after / 1e9,
                b.ratio
            );
        }
    }
    if !c.unmatched.is_empty() {
        md += "\n## Not compared\n\n| point | why |\n|---|---|\n";
        for (point, why) in &c.unmatched {
            md += &format!("| {point} | {} |\n", cell(why));
        }
    }
    md
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}
