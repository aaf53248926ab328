//! This machine's dense matrix-multiply rate: the peak that MFU of local runs is measured
//! against, where no system profile states one. Measured once per sweep folder (and again only
//! when the host or the threads per rank change) and kept in `<sweep>/local_peak.json` with
//! its source, so a report says what its MFU means.

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::metrics::timestamp;
use crate::records::{write_atomic, RecordError};

/// File name of the measurement inside a sweep's folder.
pub use crate::records::sweep_dir::LOCAL_PEAK_FILE;

/// Matrix order of the measurement: large enough for BLAS to reach its steady rate on one core,
/// small enough to take well under a second.
const ORDER: i64 = 1024;
const REPEATS: usize = 5;

/// A measured per-rank peak.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalPeak {
    /// FLOP/s of one rank: `threads` libtorch threads multiplying fp32 matrices.
    pub peak_flop_per_s: f64,
    pub threads: u32,
    pub hostname: String,
    pub measured_at: String,
    /// How the figure was obtained, for the report.
    pub source: String,
}

/// The best of [`REPEATS`] fp32 `ORDER x ORDER` matrix products on the CPU with `threads`
/// libtorch threads, as FLOP/s (2 n^3 per product).
pub fn dense_matmul_flop_per_s(threads: u32) -> f64 {
    tch::set_num_threads(threads.max(1) as i32);
    matmul_flop_per_s(Device::Cpu, Kind::Float, ORDER)
}

/// The best of [`REPEATS`] `order x order` products of `kind` matrices on `device`, as FLOP/s
/// (2 n^3 per product; reading one element of the product waits for the device).
pub fn matmul_flop_per_s(device: Device, kind: Kind, order: i64) -> f64 {
    let a = Tensor::randn([order, order], (kind, device));
    let b = Tensor::randn([order, order], (kind, device));
    let _ = a.matmul(&b).double_value(&[0, 0]);
    let flop = 2.0 * (order as f64).powi(3);
    (0..REPEATS)
        .map(|_| {
            let start = Instant::now();
            let c = a.matmul(&b);
            let _ = c.double_value(&[0, 0]);
            flop / start.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

/// The sweep's measured peak for `threads` threads per rank on this host, measured now if
/// `<sweep_dir>/local_peak.json` holds none that fits.
pub fn local_peak(sweep_dir: &Path, threads: u32) -> Result<LocalPeak, RecordError> {
    let path = sweep_dir.join(LOCAL_PEAK_FILE);
    let hostname = hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
    let kept: Option<LocalPeak> =
        std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok());
    if let Some(peak) = kept.filter(|p| p.threads == threads && p.hostname == hostname) {
        return Ok(peak);
    }
    let rate = dense_matmul_flop_per_s(threads);
    let peak = LocalPeak {
        peak_flop_per_s: rate,
        threads,
        source: format!(
            "measured on {hostname}: fp32 {ORDER}x{ORDER} matrix products on the CPU with {threads} libtorch thread(s) per rank, best of {REPEATS} ({:.1} GFLOP/s)",
            rate / 1e9
        ),
        hostname,
        measured_at: timestamp(),
    };
    let json = serde_json::to_vec_pretty(&peak).expect("a peak serialises");
    write_atomic(&path, &json)?;
    Ok(peak)
}
