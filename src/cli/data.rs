//! `shardsweep data`: image sets for training and probing. The commands on files are in
//! `data_files.rs` (shared with `shardsweep-lite`); `bench` here measures the loader alone
//! (images/s and bytes/s against worker threads), which makes tensors.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;
use shardsweep::data::{
    rank_batches, ImageSet, ImageSetSource, Loader, Source, SyntheticImages, MAE_CROP_MIN_SCALE,
};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    #[command(flatten)]
    Files(super::data_files::Command),
    /// Images/s of the loader alone (no training) for each number of worker threads.
    Bench(BenchArgs),
}

#[derive(clap::Args)]
struct BenchArgs {
    /// "synthetic" or an image set file.
    data: String,
    /// Worker thread counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "0,1,2,4")]
    workers: Vec<usize>,
    /// Images per batch.
    #[arg(long, default_value_t = 8)]
    batch: u32,
    #[arg(long, default_value_t = 40)]
    batches: u32,
    /// Output image side, pixels.
    #[arg(long, default_value_t = 64)]
    image_size: usize,
    /// Channels of synthetic images (an image set has its own).
    #[arg(long, default_value_t = 3)]
    channels: i64,
    /// Also write the figures as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    match args.command {
        Command::Files(command) => super::data_files::run(command),
        Command::Bench(args) => bench(args),
    }
}

#[derive(Serialize)]
struct LoaderSpeed {
    data: String,
    loader_workers: usize,
    batch: u32,
    batches: u32,
    images_per_s: f64,
    /// Samples read from the set (at their stored type, uncompressed) per second of wall time.
    read_bytes_per_s: f64,
    /// The same images' bytes in the file (compressed; the set's average per image) per second.
    stored_bytes_per_s: f64,
    /// fp32 samples handed to the model per second.
    decoded_bytes_per_s: f64,
    read_bytes: u64,
    read_s: f64,
    decode_s: f64,
    augment_s: f64,
}

fn bench(args: BenchArgs) -> Result<ExitCode> {
    let mut stored_per_read = 0.0;
    let source: Arc<dyn Source> = if args.data == "synthetic" {
        let (image_size, channels) = (args.image_size as i64, args.channels);
        Arc::new(SyntheticImages { seed: 0, image_size, channels })
    } else {
        let set = ImageSet::open(Path::new(&args.data))?;
        let (read, stored) = set.image_bytes();
        stored_per_read = stored / read as f64;
        Arc::new(ImageSetSource::new(set, 0, args.image_size, MAE_CROP_MIN_SCALE)?)
    };
    let decoded_per_image = (source.image_shape().iter().product::<usize>() * 4) as f64;
    let mut rows = Vec::new();
    let table_header = [
        "workers",
        "images/s",
        "read MB/s",
        "stored MB/s",
        "decoded MB/s",
        "read s",
        "decode s",
        "augment s",
    ];
    let mut table = super::table(table_header);
    for &workers in &args.workers {
        let batches = rank_batches(args.batches, args.batch, 0, args.batch, 1);
        let mut loader = Loader::new(Arc::clone(&source), batches, 0, 16, workers);
        let start = Instant::now();
        let mut row = LoaderSpeed {
            data: args.data.clone(),
            loader_workers: workers,
            batch: args.batch,
            batches: args.batches,
            images_per_s: 0.0,
            read_bytes_per_s: 0.0,
            stored_bytes_per_s: 0.0,
            decoded_bytes_per_s: 0.0,
            read_bytes: 0,
            read_s: 0.0,
            decode_s: 0.0,
            augment_s: 0.0,
        };
        while let Some(batch) = loader.next_batch() {
            let figures = batch?.figures;
            row.read_bytes += figures.read_bytes;
            row.read_s += figures.read_s;
            row.decode_s += figures.decode_s;
            row.augment_s += figures.augment_s;
        }
        let wall_s = start.elapsed().as_secs_f64();
        row.images_per_s = f64::from(args.batch * args.batches) / wall_s;
        row.read_bytes_per_s = row.read_bytes as f64 / wall_s;
        row.stored_bytes_per_s = row.read_bytes_per_s * stored_per_read;
        row.decoded_bytes_per_s = row.images_per_s * decoded_per_image;
        table.add_row(vec![
            workers.to_string(),
            format!("{:.0}", row.images_per_s),
            format!("{:.1}", row.read_bytes_per_s / 1e6),
            format!("{:.1}", row.stored_bytes_per_s / 1e6),
            format!("{:.1}", row.decoded_bytes_per_s / 1e6),
            format!("{:.3}", row.read_s),
            format!("{:.3}", row.decode_s),
            format!("{:.3}", row.augment_s),
        ]);
        rows.push(row);
    }
    outln!("{table}");
    if let Some(path) = args.json {
        let text = serde_json::to_vec_pretty(&rows)?;
        shardsweep::records::write_atomic(&path, &text)
            .with_context(|| format!("{}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
