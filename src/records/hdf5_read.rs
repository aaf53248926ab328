//! Reading `records.h5` back: the layout [`write_records`](super::write_records) writes, opened
//! once with its schema version checked, tables and columns by name.

use std::path::{Path, PathBuf};

use hdf5::types::VarLenUnicode;
use hdf5::{File, Group};
use ndarray::Array2;

use super::{check_schema, RecordError, RECORDS_FILE};

/// An open `records.h5`.
pub struct RecordsReader {
    path: PathBuf,
    file: File,
}

impl RecordsReader {
    /// Opens `<point_dir>/records.h5`.
    ///
    /// # Errors
    /// [`RecordError::Hdf5`] if it cannot be opened (missing, truncated), and
    /// [`RecordError::Schema`] if another schema version wrote it.
    pub fn open(point_dir: &Path) -> Result<Self, RecordError> {
        let path = point_dir.join(RECORDS_FILE);
        let file = File::open(&path).map_err(RecordError::hdf5(&path))?;
        let version: u32 = file
            .attr("schema_version")
            .and_then(|a| a.read_scalar())
            .map_err(RecordError::hdf5(&path))?;
        check_schema(&path, version)?;
        Ok(Self { path, file })
    }

    /// The file's path (`<point>/records.h5`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Names of the datasets in `group` (`steps`, `memory`, `units`, `collectives`), or `None`
    /// if the file has no such group (records written before it existed).
    pub fn names(&self, group: &str) -> Result<Option<Vec<String>>, RecordError> {
        match self.file.group(group) {
            Ok(g) => g.member_names().map(Some).map_err(RecordError::hdf5(&self.path)),
            Err(_) => Ok(None),
        }
    }

    /// A `[ranks, steps]` table of `group` as f64 (e.g. `steps`/`forward_s`, `memory`/...).
    pub fn table(&self, group: &str, name: &str) -> Result<Array2<f64>, RecordError> {
        self.group(group)?
            .dataset(name)
            .and_then(|d| d.read_2d::<f64>())
            .map_err(RecordError::hdf5(&self.path))
    }

    /// A one-row-per-record column of `group` as f64 (`units`, `collectives`).
    pub fn column(&self, group: &str, name: &str) -> Result<Vec<f64>, RecordError> {
        self.group(group)?
            .dataset(name)
            .and_then(|d| d.read_raw::<f64>())
            .map_err(RecordError::hdf5(&self.path))
    }

    /// A text column of `group` (e.g. `collectives`/`kind`).
    pub fn text_column(&self, group: &str, name: &str) -> Result<Vec<String>, RecordError> {
        let values = self
            .group(group)?
            .dataset(name)
            .and_then(|d| d.read_raw::<VarLenUnicode>())
            .map_err(RecordError::hdf5(&self.path))?;
        Ok(values.iter().map(|v| v.as_str().to_string()).collect())
    }

    fn group(&self, name: &str) -> Result<Group, RecordError> {
        self.file.group(name).map_err(RecordError::hdf5(&self.path))
    }
}
