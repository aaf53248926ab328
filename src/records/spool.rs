//! A rank's spool, `ranks/rank-NNNNN.jsonl`: a line about the rank, one JSON line per finished
//! step and an end or error line, each flushed as it is written; read back (a torn last line
//! ignored) when the point is finalised.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use super::schema::{RankInfo, SpoolLine, StepRecord};
use super::{RecordError, RANKS_DIR};

/// `<point>/ranks/rank-NNNNN.jsonl`: `rank`'s spool, the rank zero-padded to five digits.
pub fn spool_path(point_dir: &Path, rank: u32) -> PathBuf {
    point_dir.join(RANKS_DIR).join(format!("rank-{rank:05}.jsonl"))
}

/// Appends a rank's lines to its spool, flushing each so that a crash keeps every finished step.
pub struct SpoolWriter {
    file: File,
    path: PathBuf,
}

impl SpoolWriter {
    /// Creates (truncates) `rank`'s spool in `point_dir`, making `ranks/` if needed.
    pub fn create(point_dir: &Path, rank: u32) -> Result<Self, RecordError> {
        let path = spool_path(point_dir, rank);
        std::fs::create_dir_all(path.parent().expect("spool has a folder"))
            .map_err(RecordError::io(&path))?;
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .map_err(RecordError::io(&path))?;
        Ok(Self { file, path })
    }

    /// Writes one line and flushes it, so a crash loses at most the line in flight.
    pub fn write(&mut self, line: &SpoolLine) -> Result<(), RecordError> {
        let mut text = serde_json::to_string(line)
            .map_err(|source| RecordError::Json { path: self.path.clone(), source })?;
        text.push('\n');
        self.file
            .write_all(text.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(RecordError::io(&self.path))
    }
}

/// Everything one rank left in its spool.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RankSpool {
    /// The start line; `None` if the rank never wrote one.
    pub info: Option<RankInfo>,
    /// The steps it finished, in order.
    pub steps: Vec<StepRecord>,
    /// Whether it wrote its end line (it finished every step).
    pub finished: bool,
    /// The message of its error line, if it wrote one.
    pub error: Option<String>,
}

/// Reads a spool; a missing file is an empty spool, and a torn last line (the rank died while
/// writing it) is ignored.
pub fn read_spool(path: &Path) -> Result<RankSpool, RecordError> {
    let mut spool = RankSpool::default();
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(spool),
        Err(e) => return Err(RecordError::io(path)(e)),
    };
    for line in BufReader::new(file).lines() {
        let line = line.map_err(RecordError::io(path))?;
        match serde_json::from_str::<SpoolLine>(&line) {
            Ok(SpoolLine::Start(info)) => spool.info = Some(info),
            Ok(SpoolLine::Step(step)) => spool.steps.push(step),
            Ok(SpoolLine::Loaded { libraries }) => {
                if let Some(info) = &mut spool.info {
                    info.fingerprint.libraries = libraries;
                }
            }
            Ok(SpoolLine::End { .. }) => spool.finished = true,
            Ok(SpoolLine::Error { message }) => spool.error = Some(message),
            Err(_) => break,
        }
    }
    Ok(spool)
}
