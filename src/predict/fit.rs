//! Fitting the model's few free parameters, each bounded and with a prior at its public
//! default (a maximum a-posteriori fit in log space: squared log residuals plus
//! ((ln value - ln default) / width)^2 per parameter):
//! - collectives (bench sweeps, records): base, per-step latency and bus bandwidth per link
//!   level by linear least squares on relative errors;
//! - compute (records' per-unit forward times): the width curve F(w) = F_max w / (w + w_half)
//!   and a per-model factor;
//! - throughput tables (and records' step times): the remaining compute and network figures
//!   by coordinate descent, golden-section search per parameter inside its bounds.

use std::collections::BTreeMap;

use super::calibration::{error_quantiles, Calibration, FitSummary, FittedParameter, Residual};
use super::collectives::{CollectiveKind, Group};
use super::hardware::Hardware;
use super::measurements::{CollectiveSample, Measured, MemorySample, UnitSample};
use super::PerfModel;

/// What a calibration is fitted to.
#[derive(Debug, Clone, Default)]
pub struct FitInput {
    pub measured: Vec<Measured>,
    /// Rows predicted with the fitted values but not fitted to (cross-validation).
    pub held_out: Vec<Measured>,
    pub units: Vec<UnitSample>,
    pub collectives: Vec<CollectiveSample>,
    pub data_s_per_pixel: Vec<f64>,
    pub backward_to_forward: Vec<f64>,
    /// Allocator peaks of GPU points: the memory overhead and reserved fractions.
    pub device_memory: Vec<MemorySample>,
}

/// A hardware figure the fit may move: accessor, bounds as factors of the default, prior width.
struct Knob {
    name: &'static str,
    get: fn(&Hardware) -> f64,
    set: fn(&mut Hardware, f64),
    factor: f64,
    prior_width: f64,
}

const TABLE_KNOBS: [Knob; 7] = [
    Knob {
        name: "compute_flop_per_s",
        get: |h| h.compute_flop_per_s,
        set: |h, v| h.compute_flop_per_s = v,
        factor: 10.0,
        prior_width: 10.0,
    },
    Knob {
        name: "compute_half_width",
        get: |h| h.compute_half_width,
        set: |h, v| h.compute_half_width = v,
        factor: 10.0,
        prior_width: 2.0,
    },
    Knob {
        name: "intra_node_bytes_per_s",
        get: |h| h.intra_node_bytes_per_s,
        set: |h, v| h.intra_node_bytes_per_s = v,
        factor: 4.0,
        prior_width: 0.5,
    },
    Knob {
        name: "pair_bytes_per_s",
        get: |h| h.pair_bytes_per_s,
        set: |h, v| h.pair_bytes_per_s = v,
        factor: 4.0,
        prior_width: 0.5,
    },
    Knob {
        name: "nic_bytes_per_s",
        get: |h| h.nic_bytes_per_s,
        set: |h, v| h.nic_bytes_per_s = v,
        factor: 4.0,
        prior_width: 0.5,
    },
    // A blocking call's time includes waiting for the last rank to arrive: timed calls give
    // its prior, whole steps the rest.
    Knob {
        name: "collective_base_s",
        get: |h| h.collective_base_s,
        set: |h, v| h.collective_base_s = v,
        factor: 100.0,
        prior_width: 2.0,
    },
    Knob {
        name: "net_ring_step_s",
        get: |h| h.net_ring_step_s,
        set: |h, v| h.net_ring_step_s = v,
        factor: 4.0,
        prior_width: 0.5,
    },
];

/// Bounds of the per-model compute factor and its prior width (log).
const MODEL_SCALE_BOUNDS: (f64, f64) = (0.33, 3.0);
const MODEL_SCALE_PRIOR: f64 = 1.0;

/// Minimises `f` over `[lo, hi]` by golden-section search (unimodal in practice).
fn golden(mut lo: f64, mut hi: f64, f: &mut dyn FnMut(f64) -> f64) -> f64 {
    let r = (5f64.sqrt() - 1.0) / 2.0;
    let (mut a, mut b) = (hi - r * (hi - lo), lo + r * (hi - lo));
    let (mut fa, mut fb) = (f(a), f(b));
    for _ in 0..40 {
        if fa < fb {
            hi = b;
            b = a;
            fb = fa;
            a = hi - r * (hi - lo);
            fa = f(a);
        } else {
            lo = a;
            a = b;
            fa = fb;
            b = lo + r * (hi - lo);
            fb = f(b);
        }
    }
    (lo + hi) / 2.0
}

/// Least squares of relative errors: t ~ x . c, weights 1/t. Returns None if singular.
fn least_squares(rows: &[(Vec<f64>, f64)]) -> Option<Vec<f64>> {
    let k = rows.first()?.0.len();
    let mut a = vec![vec![0.0; k + 1]; k];
    for (x, t) in rows {
        let w = 1.0 / (t * t);
        for i in 0..k {
            for j in 0..k {
                a[i][j] += w * x[i] * x[j];
            }
            a[i][k] += w * x[i] * t;
        }
    }
    // Gaussian elimination with partial pivoting.
    for col in 0..k {
        let pivot = (col..k).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-300 {
            return None;
        }
        a.swap(col, pivot);
        for row in 0..k {
            if row != col {
                let f = a[row][col] / a[col][col];
                let pivot_row = a[col].clone();
                for (x, p) in a[row].iter_mut().zip(&pivot_row).skip(col) {
                    *x -= f * p;
                }
            }
        }
    }
    Some((0..k).map(|i| a[i][k] / a[i][i]).collect())
}

/// Steps and bus-bandwidth bytes of one call (the coefficients of latency and 1/busbw).
fn features(s: &CollectiveSample) -> (f64, f64) {
    let p = f64::from(s.group.ranks);
    match s.kind {
        CollectiveKind::AllGather | CollectiveKind::ReduceScatter => {
            (p - 1.0, (p - 1.0) / p * s.bytes)
        }
        CollectiveKind::AllReduce => (2.0 * (p - 1.0), 2.0 * (p - 1.0) / p * s.bytes),
    }
}

/// The smallest collective base a fit gives (1 ns): the table fit searches each figure in log
/// space around it, where 0 has no place (a base fitted to 0 made that search NaN).
const MIN_BASE_S: f64 = 1e-9;

/// One link level's fit: base (s), step latency (s; `None`: not determined), bus bandwidth (B/s).
type AlphaBeta = (f64, Option<f64>, f64);

/// [`alpha_beta_once`] with outliers left out: a sample more than 4 times the median relative
/// residual off (and at least 50%) is dropped and the rest fitted again, up to three times, so
/// one pathological size range (a protocol switch, an rccl-tests dip of 50x at 2-8 MiB) cannot
/// set a level's bandwidth. Returns the fit and how many samples were dropped.
fn alpha_beta(samples: &[&CollectiveSample], step_default: f64) -> Option<(AlphaBeta, usize)> {
    let mut kept: Vec<&CollectiveSample> = samples.to_vec();
    let mut fitted = alpha_beta_once(&kept, step_default)?;
    for _ in 0..3 {
        let (base, step, bw) = fitted;
        let residual = |s: &CollectiveSample| {
            let (steps, bytes) = features(s);
            let t = base + steps * step.unwrap_or(step_default) + bytes / bw;
            ((t - s.seconds) / s.seconds).abs()
        };
        let mut r: Vec<f64> = kept.iter().map(|s| residual(s)).collect();
        r.sort_by(f64::total_cmp);
        let limit = (4.0 * r[r.len() / 2]).max(0.5);
        let before = kept.len();
        kept.retain(|s| residual(s) <= limit);
        if kept.len() == before || kept.len() < 3 {
            break;
        }
        fitted = alpha_beta_once(&kept, step_default)?;
    }
    Some((fitted, samples.len() - kept.len()))
}

/// Fits (base, step latency, bus bandwidth) to samples of one link level. With a single
/// step count the step latency cannot be told from the base: it keeps `step_default`.
fn alpha_beta_once(samples: &[&CollectiveSample], step_default: f64) -> Option<AlphaBeta> {
    let steps: std::collections::BTreeSet<u64> =
        samples.iter().map(|s| features(s).0 as u64).collect();
    if steps.len() >= 2 {
        let rows: Vec<_> = samples
            .iter()
            .map(|s| {
                let (steps, bytes) = features(s);
                (vec![1.0, steps, bytes], s.seconds)
            })
            .collect();
        let c = least_squares(&rows)?;
        (c[2] > 0.0).then(|| (c[0].max(MIN_BASE_S), Some(c[1].max(1e-9)), 1.0 / c[2]))
    } else {
        let rows: Vec<_> = samples.iter().map(|s| (vec![1.0, features(s).1], s.seconds)).collect();
        let c = least_squares(&rows)?;
        let steps = features(samples[0]).0;
        (c[1] > 0.0).then(|| ((c[0] - steps * step_default).max(MIN_BASE_S), None, 1.0 / c[1]))
    }
}

struct Fitter<'a> {
    model: PerfModel,
    input: &'a FitInput,
    defaults: Hardware,
    prior_width: BTreeMap<&'static str, f64>,
    /// Per-model factors measured from unit times (the prior's centre), 1 where none.
    scale_prior: BTreeMap<String, f64>,
}

impl Fitter<'_> {
    fn objective(&self) -> f64 {
        let mut sum = 0.0;
        for m in &self.input.measured {
            let pred = self.model.model_only(&m.point).images_per_s;
            sum += (pred / m.images_per_s).ln().powi(2);
        }
        let hw = self.model.hardware();
        for knob in &TABLE_KNOBS {
            let w = self.prior_width[knob.name];
            sum += ((knob.get)(hw) / (knob.get)(&self.defaults)).ln().powi(2) / (w * w);
        }
        if let Some(cal) = &self.model.calibration {
            for (m, s) in &cal.model_compute_scale {
                let centre = self.scale_prior.get(m).copied().unwrap_or(1.0);
                sum += (s / centre).ln().powi(2) / (MODEL_SCALE_PRIOR * MODEL_SCALE_PRIOR);
            }
        }
        sum
    }

    fn cal(&mut self) -> &mut Calibration {
        self.model.calibration.as_mut().expect("the fitter holds a calibration")
    }

    fn fit_knob(&mut self, knob: &Knob) {
        let default = (knob.get)(&self.defaults);
        if !(default.is_finite() && default > 0.0) {
            // No log-space range around it: the figure stays as measured.
            return;
        }
        let (lo, hi) = ((default / knob.factor).ln(), (default * knob.factor).ln());
        let best = golden(lo, hi, &mut |x| {
            (knob.set)(&mut self.cal().hardware, x.exp());
            self.objective()
        });
        (knob.set)(&mut self.cal().hardware, best.exp());
    }

    fn fit_model_scale(&mut self, name: &str) {
        let (lo, hi) = (MODEL_SCALE_BOUNDS.0.ln(), MODEL_SCALE_BOUNDS.1.ln());
        let best = golden(lo, hi, &mut |x| {
            self.cal().model_compute_scale.insert(name.to_string(), x.exp());
            self.objective()
        });
        self.cal().model_compute_scale.insert(name.to_string(), best.exp());
    }
}

/// Which samples belong to a link level.
type GroupFilter = fn(&Group) -> bool;
/// Reads one hardware figure.
type Getter = fn(&Hardware) -> f64;

/// Fits a calibration for `system` from `input`, starting from the profile's `defaults`: the
/// figures the samples measure directly, then the rest against the throughput table, then
/// the calibration's parameters, anchors and errors.
pub fn fit(
    system: &str,
    defaults: &Hardware,
    peak_flop_per_s: BTreeMap<String, f64>,
    input: &FitInput,
) -> Calibration {
    let mut direct = Direct { hw: defaults.clone(), sources: BTreeMap::new(), fixed: Vec::new() };
    fit_collectives(&mut direct, &input.collectives);
    let model_scale = fit_compute(&mut direct, &input.units);
    fit_medians(&mut direct, input);
    let Direct { hw, mut sources, fixed } = direct;
    let mut prior_width: BTreeMap<&'static str, f64> =
        TABLE_KNOBS.iter().map(|k| (k.name, k.prior_width)).collect();
    for name in &fixed {
        // A figure measured directly stays close to its measurement in the table fit.
        prior_width.insert(name, 0.05);
    }

    let calibration = Calibration {
        system: system.into(),
        created_at: crate::metrics::timestamp(),
        hardware: hw.clone(),
        model_compute_scale: model_scale.clone(),
        parameters: Vec::new(),
        residuals: Vec::new(),
        summary: FitSummary::default(),
        anchors: Vec::new(),
        error_per_doubling: None,
        error_across_configurations: None,
        validation: None,
    };
    let mut fitter = Fitter {
        model: PerfModel {
            hardware: defaults.clone(),
            calibration: Some(calibration),
            peak_flop_per_s: peak_flop_per_s.clone(),
            anchors: Vec::new(),
        },
        input,
        defaults: hw.clone(),
        prior_width,
        scale_prior: model_scale.clone(),
    };
    fit_table(&mut fitter, input, &fixed, &mut sources);
    let model = fitter.model;
    let mut cal = model.calibration.clone().expect("fitted");
    let parameters = parameters(defaults, &cal, &sources, input);
    assess(&mut cal, &model, input);
    cal.parameters = parameters;
    cal
}

/// What the samples measure directly, before the table fit: the figures, where each comes
/// from, and those measured directly (held close to their measurement afterwards).
struct Direct {
    hw: Hardware,
    sources: BTreeMap<&'static str, String>,
    fixed: Vec<&'static str>,
}

/// Collectives: one level inside a node (pairs apart), one across nodes; base, per-step
/// latency and bandwidth of each level measured.
fn fit_collectives(d: &mut Direct, collectives: &[CollectiveSample]) {
    let levels: [(&str, GroupFilter); 3] = [
        ("pair", |g| g.nodes <= 1 && g.per_node <= 2),
        ("intra", |g| g.nodes <= 1 && g.per_node > 2),
        ("net", |g| g.nodes > 1),
    ];
    for (level, select) in &levels {
        let samples: Vec<&CollectiveSample> =
            collectives.iter().filter(|s| select(&s.group)).collect();
        if samples.is_empty() {
            continue;
        }
        let step_default = if *level == "net" { d.hw.net_ring_step_s } else { d.hw.intra_step_s };
        if let Some(((base, step, bw), dropped)) = alpha_beta(&samples, step_default) {
            let from = match dropped {
                0 => format!("{} timed {level} collectives", samples.len()),
                n => format!("{} timed {level} collectives ({n} outliers left out)", samples.len()),
            };
            match *level {
                "pair" => {
                    d.hw.pair_bytes_per_s = bw;
                    d.fixed.push("pair_bytes_per_s");
                    d.sources.insert("pair_bytes_per_s", from.clone());
                }
                "intra" => {
                    d.hw.intra_node_bytes_per_s = bw;
                    d.fixed.push("intra_node_bytes_per_s");
                    d.sources.insert("intra_node_bytes_per_s", from.clone());
                }
                _ => {
                    let share = samples
                        .iter()
                        .map(|s| f64::from(s.group.per_node) / f64::from(d.hw.ranks_per_nic))
                        .fold(f64::INFINITY, f64::min);
                    d.hw.nic_bytes_per_s = bw / share.max(1e-9);
                    d.fixed.push("nic_bytes_per_s");
                    d.sources.insert("nic_bytes_per_s", from.clone());
                }
            }
            if let Some(step) = step {
                if *level == "net" {
                    d.hw.net_ring_step_s = step;
                    d.hw.net_tree_step_s = step;
                    d.fixed.push("net_ring_step_s");
                    d.sources.insert("net_ring_step_s", from.clone());
                    d.sources.insert("net_tree_step_s", from.clone());
                } else {
                    d.hw.intra_step_s = step;
                    d.sources.insert("intra_step_s", from.clone());
                }
            }
            if *level != "net" {
                d.hw.collective_base_s = base;
                d.sources.insert("collective_base_s", from);
            }
        }
    }
}

/// Compute: the width curve from per-unit forward times, then a factor per model (returned).
fn fit_compute(d: &mut Direct, units: &[UnitSample]) -> BTreeMap<String, f64> {
    let mut model_scale = BTreeMap::new();
    if !units.is_empty() {
        let obs: Vec<(f64, f64, &str)> = units
            .iter()
            .filter(|u| u.seconds > 0.0)
            .map(|u| (u.width, (u.flop / u.seconds).ln(), u.model.as_str()))
            .collect();
        // ln F = ln F_max + ln scale_model + ln(w / (w + w_half)): for a given w_half each
        // model's intercept is its mean residual; w_half minimises the squared residuals.
        let models: Vec<&str> = {
            let mut m: Vec<&str> = obs.iter().map(|o| o.2).collect();
            m.sort();
            m.dedup();
            m
        };
        let intercepts = |half: f64| -> Vec<f64> {
            models
                .iter()
                .map(|m| {
                    let r: Vec<f64> = obs
                        .iter()
                        .filter(|o| o.2 == *m)
                        .map(|(w, lf, _)| lf - (w / (w + half)).ln())
                        .collect();
                    r.iter().sum::<f64>() / r.len() as f64
                })
                .collect()
        };
        let sse = |half: f64| {
            let c = intercepts(half);
            obs.iter()
                .map(|(w, lf, m)| {
                    let i = models.iter().position(|x| x == m).expect("listed");
                    (lf - c[i] - (w / (w + half)).ln()).powi(2)
                })
                .sum::<f64>()
        };
        let half = golden(0.0, 12.0, &mut |x| sse(x.exp())).exp();
        let c = intercepts(half);
        let level = c.iter().sum::<f64>() / c.len() as f64;
        d.hw.compute_half_width = half;
        d.hw.compute_flop_per_s = level.exp();
        let from = format!("{} timed unit forwards", obs.len());
        for name in ["compute_flop_per_s", "compute_half_width"] {
            d.fixed.push(name);
            d.sources.insert(name, from.clone());
        }
        for (m, ci) in models.iter().zip(&c) {
            model_scale.insert(m.to_string(), (ci - level).exp());
        }
    }
    model_scale
}

/// The figures that are medians of their samples: the data phase per pixel, backward over
/// forward, and the allocator's overhead and reserved fractions.
fn fit_medians(d: &mut Direct, input: &FitInput) {
    if !input.data_s_per_pixel.is_empty() {
        let mut v = input.data_s_per_pixel.clone();
        v.sort_by(f64::total_cmp);
        d.hw.data_s_per_pixel = v[v.len() / 2];
        d.sources.insert("data_s_per_pixel", format!("{} records' data phases", v.len()));
    }
    if !input.backward_to_forward.is_empty() {
        let mut r = input.backward_to_forward.clone();
        r.sort_by(f64::total_cmp);
        d.hw.backward_to_forward = r[r.len() / 2];
        d.sources.insert("backward_to_forward", format!("{} timed unit backwards", r.len()));
    }
    if !input.device_memory.is_empty() {
        // Active peak over the model's categories, and reserved over active: medians over the
        // points (the categories are exact for the harness's own account; what is left is the
        // allocator's rounding, communication buffers and workspace).
        let mut over: Vec<f64> = input
            .device_memory
            .iter()
            .map(|m| m.active_peak_bytes / super::memory::peak(&m.point, 0.0).peak - 1.0)
            .collect();
        let mut reserved: Vec<f64> = input
            .device_memory
            .iter()
            .map(|m| m.reserved_peak_bytes / m.active_peak_bytes - 1.0)
            .collect();
        over.sort_by(f64::total_cmp);
        reserved.sort_by(f64::total_cmp);
        d.hw.memory_overhead_fraction = over[over.len() / 2].max(0.0);
        d.hw.memory_reserved_fraction = reserved[reserved.len() / 2].max(0.0);
        let from = format!("{} records' device memory peaks", over.len());
        d.sources.insert("memory_overhead_fraction", from.clone());
        d.sources.insert("memory_reserved_fraction", from);
    }
}

/// The figures the samples left free, against the measured throughputs: the shape curve
/// alone, then per-model factors with the network figures.
fn fit_table(
    fitter: &mut Fitter,
    input: &FitInput,
    fixed: &[&'static str],
    sources: &mut BTreeMap<&'static str, String>,
) {
    if !input.measured.is_empty() {
        let from = format!("{} measured throughputs", input.measured.len());
        // First the shape curve alone (what models the table lacks are predicted from)...
        let compute_fixed = fixed.contains(&"compute_flop_per_s");
        if !compute_fixed {
            for _ in 0..3 {
                fitter.fit_knob(&TABLE_KNOBS[0]);
                fitter.fit_knob(&TABLE_KNOBS[1]);
            }
        }
        // ...then per-model factors with the network figures.
        let models: std::collections::BTreeSet<String> =
            input.measured.iter().map(|m| m.point.model.name.clone()).collect();
        for _ in 0..3 {
            for m in &models {
                fitter.fit_model_scale(m);
            }
            for knob in &TABLE_KNOBS[2..] {
                if !fixed.contains(&knob.name) {
                    fitter.fit_knob(knob);
                }
            }
        }
        for knob in &TABLE_KNOBS {
            if !fixed.contains(&knob.name) {
                sources.insert(knob.name, from.clone());
            }
        }
    }
}

/// Every figure of the calibration with its default, bounds and source, and the per-model
/// compute factors.
fn parameters(
    defaults: &Hardware,
    cal: &Calibration,
    sources: &BTreeMap<&'static str, String>,
    input: &FitInput,
) -> Vec<FittedParameter> {
    let fitted_hw = &cal.hardware;
    let mut parameters = Vec::new();
    let all: [(&str, Getter); 15] = [
        ("backward_to_forward", |h| h.backward_to_forward),
        ("compute_flop_per_s", |h| h.compute_flop_per_s),
        ("compute_half_width", |h| h.compute_half_width),
        ("memory_bytes_per_s", |h| h.memory_bytes_per_s),
        ("intra_node_bytes_per_s", |h| h.intra_node_bytes_per_s),
        ("pair_bytes_per_s", |h| h.pair_bytes_per_s),
        ("intra_step_s", |h| h.intra_step_s),
        ("nic_bytes_per_s", |h| h.nic_bytes_per_s),
        ("net_ring_step_s", |h| h.net_ring_step_s),
        ("net_tree_step_s", |h| h.net_tree_step_s),
        ("collective_base_s", |h| h.collective_base_s),
        ("ring_congestion_nodes", |h| h.ring_congestion_nodes),
        ("data_s_per_pixel", |h| h.data_s_per_pixel),
        ("memory_overhead_fraction", |h| h.memory_overhead_fraction),
        ("memory_reserved_fraction", |h| h.memory_reserved_fraction),
    ];
    for (name, get) in all {
        let factor = TABLE_KNOBS.iter().find(|k| k.name == name).map(|k| k.factor);
        let d = get(defaults);
        parameters.push(FittedParameter {
            name: name.into(),
            value: get(fitted_hw),
            default: d,
            lower: factor.map(|f| d / f).or((!sources.contains_key(name)).then_some(d)),
            upper: factor.map(|f| d * f).or((!sources.contains_key(name)).then_some(d)),
            source: sources.get(name).cloned().unwrap_or_else(|| "default (system profile)".into()),
        });
    }
    for (m, s) in &cal.model_compute_scale {
        parameters.push(FittedParameter {
            name: format!("model_compute_scale.{m}"),
            value: *s,
            default: 1.0,
            lower: Some(MODEL_SCALE_BOUNDS.0),
            upper: Some(MODEL_SCALE_BOUNDS.1),
            source: if input.units.is_empty() {
                "measured throughputs".into()
            } else {
                "timed unit forwards".into()
            },
        });
    }
    parameters
}

/// The calibration's anchors, its errors across configurations and node counts, and the
/// residuals of the fitted and held-out rows with their summary.
fn assess(cal: &mut Calibration, model: &PerfModel, input: &FitInput) {
    // Measured rows are the anchors of predictions of their configurations; held-out rows are
    // predicted as a user would get them (standing on the fitted rows where they can), fitted
    // rows by the model alone (an anchored fitted row would be its own measurement).
    cal.anchors = input.measured.iter().map(Measured::anchor).collect();
    cal.error_per_doubling = error_per_doubling(model, &input.measured);
    cal.error_across_configurations = error_across_configurations(model, &input.measured);
    let anchored =
        PerfModel { calibration: Some(cal.clone()), anchors: cal.anchors.clone(), ..model.clone() };
    let residual = |m: &Measured, fitted: bool| {
        let r = if fitted { model.model_only(&m.point) } else { anchored.predict(&m.point) };
        let p = r.images_per_s;
        Residual {
            point: m.point.id.clone(),
            source: m.source.clone(),
            measured_images_per_s: m.images_per_s,
            predicted_images_per_s: p,
            relative_error: (p - m.images_per_s) / m.images_per_s,
            fitted,
            basis: r.basis.label(),
        }
    };
    let mut residuals: Vec<Residual> = input.measured.iter().map(|m| residual(m, true)).collect();
    residuals.extend(input.held_out.iter().map(|m| residual(m, false)));
    let errs = |fitted: bool| {
        let e: Vec<f64> =
            residuals.iter().filter(|r| r.fitted == fitted).map(|r| r.relative_error).collect();
        error_quantiles(&e)
    };
    let (fm, fp) = errs(true);
    let (hm, hp) = errs(false);
    cal.summary = FitSummary {
        rows_fitted: input.measured.len(),
        rows_held_out: input.held_out.len(),
        fitted_median_abs_error: fm,
        fitted_p90_abs_error: fp,
        held_out_median_abs_error: hm,
        held_out_p90_abs_error: hp,
        unit_samples: input.units.len(),
        collective_samples: input.collectives.len(),
    };
    cal.residuals = residuals;
}

/// The error of the model's ratio between configurations (root mean square of the log error):
/// each measured row predicted from every other configuration of its model measured at the
/// same node count and micro-batch. `None` with no such pair.
fn error_across_configurations(model: &PerfModel, measured: &[Measured]) -> Option<f64> {
    let mut squares = Vec::new();
    for a in measured {
        let anchor = a.anchor();
        for b in measured {
            if anchor.doublings(&b.point) != 0.0
                || anchor.configures(&b.point)
                || !anchor.is_sibling_of(&b.point)
            {
                continue;
            }
            let ratio = model.model_only(&b.point).images_per_s
                / model.model_only(&anchor.sibling_spec(&b.point)).images_per_s;
            squares.push((a.images_per_s * ratio / b.images_per_s).ln().powi(2));
        }
    }
    (!squares.is_empty()).then(|| (squares.iter().sum::<f64>() / squares.len() as f64).sqrt())
}

/// The extrapolation error per doubling (standard deviation of the log, root mean square): each
/// measured row predicted from every other row of its configuration at another node count or
/// micro-batch (the anchor rule), its log error over the doublings between them. `None` with
/// no such pair.
fn error_per_doubling(model: &PerfModel, measured: &[Measured]) -> Option<f64> {
    let mut squares = Vec::new();
    for a in measured {
        let anchor = a.anchor();
        for b in measured {
            let d = anchor.doublings(&b.point);
            if d == 0.0 || !anchor.configures(&b.point) {
                continue;
            }
            let ratio = model.model_only(&b.point).images_per_s
                / model.model_only(&anchor.spec(&b.point)).images_per_s;
            squares.push(((a.images_per_s * ratio / b.images_per_s).ln() / d).powi(2));
        }
    }
    (!squares.is_empty()).then(|| (squares.iter().sum::<f64>() / squares.len() as f64).sqrt())
}
