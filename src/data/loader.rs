//! The input pipeline of one rank: worker threads fill this rank's micro-batches ahead of the
//! step, by global sample index, into a bounded prefetch queue that hands them out in order.
//! Content depends only on the sample indices (every sample is a pure function of the seed and
//! its global index), so the number of workers and the queue change timing, never data.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use tch::Tensor;

use super::synthetic::fill_mask_noise;
use super::DataError;
pub use crate::records::LoaderRecord as LoaderFigures;

/// Batches each worker may have ready ahead of the step: PyTorch DataLoader's default
/// `prefetch_factor` (2 batches per worker).
pub const PREFETCH_PER_WORKER: usize = 2;

/// Where pixels come from: a pure function of the global sample index.
pub trait Source: Send + Sync {
    /// [channels, height, width] of every image it fills.
    fn image_shape(&self) -> [usize; 3];
    /// Writes the fp32 image of global sample `index` into `out` (channels-first), adding the
    /// bytes it read and the time it spent to `figures`.
    fn fill(
        &self,
        index: u64,
        out: &mut [f32],
        figures: &mut LoaderFigures,
    ) -> Result<(), DataError>;
}

/// One micro-batch, ready for the model.
pub struct Batch {
    /// [n, channels, height, width] fp32 on the CPU.
    pub images: Tensor,
    /// MAE masking noise, [n, patches] fp32 uniform in [0, 1).
    pub noise: Tensor,
    /// What producing it cost (summed over its samples), and the queue depth when asked for.
    pub figures: LoaderFigures,
}

struct Raw {
    images: Vec<f32>,
    noise: Vec<f32>,
    figures: LoaderFigures,
}

struct Queue {
    next_job: usize,
    taken: usize,
    ready: BTreeMap<usize, Result<Raw, DataError>>,
    stop: bool,
}

struct Shared {
    source: Arc<dyn Source>,
    batches: Vec<Range<u64>>,
    seed: u64,
    patches: usize,
    depth: usize,
    queue: Mutex<Queue>,
    changed: Condvar,
}

impl Shared {
    fn produce(&self, job: usize) -> Result<Raw, DataError> {
        let samples = self.batches[job].clone();
        let n = (samples.end - samples.start) as usize;
        let per_image: usize = self.source.image_shape().iter().product();
        let mut raw = Raw {
            images: vec![0.0; n * per_image],
            noise: vec![0.0; n * self.patches],
            figures: LoaderFigures::default(),
        };
        let images = raw.images.chunks_exact_mut(per_image.max(1));
        let noise = raw.noise.chunks_exact_mut(self.patches.max(1));
        for ((index, image), noise) in samples.zip(images).zip(noise) {
            self.source.fill(index, image, &mut raw.figures)?;
            fill_mask_noise(self.seed, index, noise);
        }
        Ok(raw)
    }

    fn work(&self) {
        loop {
            let job = {
                let mut queue = self.queue.lock().expect("loader queue");
                while !queue.stop
                    && queue.next_job < self.batches.len()
                    && queue.next_job >= queue.taken + self.depth
                {
                    queue = self.changed.wait(queue).expect("loader queue");
                }
                if queue.stop || queue.next_job >= self.batches.len() {
                    return;
                }
                queue.next_job += 1;
                queue.next_job - 1
            };
            let raw = self.produce(job);
            self.queue.lock().expect("loader queue").ready.insert(job, raw);
            self.changed.notify_all();
        }
    }
}

/// Hands out the micro-batches `batches` (global sample ranges) in order.
pub struct Loader {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Loader {
    /// `workers` threads fill batches ahead, at most [`PREFETCH_PER_WORKER`] per worker
    /// waiting; 0 fills each batch when it is asked for. Masking noise is [n, `patches`] from
    /// `seed`.
    pub fn new(
        source: Arc<dyn Source>,
        batches: Vec<Range<u64>>,
        seed: u64,
        patches: i64,
        workers: usize,
    ) -> Self {
        let shared = Arc::new(Shared {
            source,
            batches,
            seed,
            patches: patches as usize,
            depth: PREFETCH_PER_WORKER * workers,
            queue: Mutex::new(Queue { next_job: 0, taken: 0, ready: BTreeMap::new(), stop: false }),
            changed: Condvar::new(),
        });
        let workers = (0..workers)
            .map(|i| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("loader-{i}"))
                    .spawn(move || shared.work())
                    .expect("a loader thread starts")
            })
            .collect();
        Self { shared, workers }
    }

    /// The next micro-batch, `None` after the last. Its `queue_depth` is the number of
    /// batches that were ready when it was asked for (0: the step waited for it).
    pub fn next_batch(&mut self) -> Option<Result<Batch, DataError>> {
        let shared = &self.shared;
        let (job, depth, raw) = if self.workers.is_empty() {
            let mut queue = shared.queue.lock().expect("loader queue");
            let job = queue.taken;
            if job >= shared.batches.len() {
                return None;
            }
            queue.taken += 1;
            drop(queue);
            (job, 0, shared.produce(job))
        } else {
            let mut queue = shared.queue.lock().expect("loader queue");
            let job = queue.taken;
            if job >= shared.batches.len() {
                return None;
            }
            let depth = queue.ready.len() as u32;
            let raw = loop {
                if let Some(raw) = queue.ready.remove(&job) {
                    break raw;
                }
                queue = shared.changed.wait(queue).expect("loader queue");
            };
            queue.taken += 1;
            drop(queue);
            shared.changed.notify_all();
            (job, depth, raw)
        };
        Some(raw.map(|raw| {
            let n = (shared.batches[job].end - shared.batches[job].start) as i64;
            let [c, h, w] = shared.source.image_shape().map(|d| d as i64);
            Batch {
                images: Tensor::from_slice(&raw.images).view([n, c, h, w]),
                noise: Tensor::from_slice(&raw.noise).view([n, shared.patches as i64]),
                figures: LoaderFigures { queue_depth: depth, ..raw.figures },
            }
        }))
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.shared.queue.lock().expect("loader queue").stop = true;
        self.shared.changed.notify_all();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// The micro-batches of one rank over a run: at step t, micro-batch m of rank r covers global
/// samples t*G + r*L + m*B .. +B (G global batch, L = B x accumulation, B micro-batch), so
/// ranks take consecutive slices of the same global batch whatever their number.
pub fn rank_batches(
    steps: u32,
    global_batch: u32,
    rank: usize,
    micro_batch: u32,
    accumulation: u32,
) -> Vec<Range<u64>> {
    let (b, local) = (u64::from(micro_batch), u64::from(micro_batch) * u64::from(accumulation));
    (0..u64::from(steps))
        .flat_map(|t| {
            (0..u64::from(accumulation)).map(move |m| {
                let first = t * u64::from(global_batch) + rank as u64 * local + m * b;
                first..first + b
            })
        })
        .collect()
}
