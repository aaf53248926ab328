//! `shardsweep probe POINT_DIR`: linear probe of a point's frozen encoder on an image set.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use shardsweep::probe::{probe, Encoder, Pool, ProbeOptions};

#[derive(clap::Args)]
pub struct Args {
    /// A finished point's folder (trained with `save_parameters = true`).
    point_dir: PathBuf,
    /// Features: `cls` (the cls token) or `mean` (the mean of the patch tokens).
    #[arg(long, default_value = "cls", value_parser = parse_pool)]
    pool: Pool,
    /// Probe the initial (untrained) encoder instead: the baseline.
    #[arg(long)]
    random_init: bool,
    /// Image set to probe on, if not the point's own `data`.
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long, default_value_t = ProbeOptions::default().epochs)]
    epochs: u32,
    #[arg(long, default_value_t = ProbeOptions::default().lr)]
    lr: f64,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let point = shardsweep::plan::read_point(&args.point_dir)?;
    let options = ProbeOptions {
        pool: args.pool,
        encoder: if args.random_init { Encoder::RandomInit } else { Encoder::Pretrained },
        epochs: args.epochs,
        lr: args.lr,
        data: args.data,
    };
    let result = probe(&point, &args.point_dir, &options)?;
    outln!(
        "{} ({:?} encoder, {:?} features): top-1 {:.2}%, top-5 {:.2}% on {} val images",
        result.point,
        result.encoder,
        result.pool,
        100.0 * result.top1,
        100.0 * result.top5,
        result.val_images
    );
    let path = args.point_dir.join(options.encoder.result_file());
    shardsweep::records::write_atomic(&path, &serde_json::to_vec_pretty(&result)?)
        .with_context(|| format!("{}", path.display()))?;
    Ok(ExitCode::SUCCESS)
}

fn parse_pool(text: &str) -> Result<Pool, String> {
    super::one_of(text, &[Pool::Cls, Pool::Mean], Pool::name)
}
