//! Faults the harness's own tests plant in the record writers, to reproduce what a user meets
//! and a test machine cannot (a full disk, a file system without `flock()`). Named in
//! `SHARDSWEEP_INJECT_FAULT` (comma-separated); nothing else reads it.

/// Faults a test can plant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Writing `records.h5` fails with ENOSPC, as on a full disk.
    RecordsNoSpace,
    /// `flock()` on the sweep's lock fails with ENOLCK, as on NFS mounts without a lock daemon.
    NoFlock,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::RecordsNoSpace => "records_no_space",
            Fault::NoFlock => "no_flock",
        }
    }

    /// Whether a test planted this fault.
    pub fn planted(self) -> bool {
        std::env::var("SHARDSWEEP_INJECT_FAULT")
            .is_ok_and(|v| v.split(',').any(|f| f.trim() == self.name()))
    }
}
