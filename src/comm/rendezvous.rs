//! Where a rank stands, from its launcher's environment, and where the ranks meet: what a
//! c10d process group needs when no MPI library starts the job.

/// This rank's place and the store it meets the others at (`MASTER_ADDR:MASTER_PORT`, hosted
/// by rank 0, as torch.distributed's `env://` initialisation does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendezvous {
    pub rank: usize,
    pub world_size: usize,
    pub local_rank: usize,
    /// Which launcher's variables gave rank and world.
    pub launcher: Launcher,
    pub master_addr: String,
    pub master_port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    /// torchrun (or anything else setting `RANK`, `WORLD_SIZE`, `LOCAL_RANK`).
    Torchrun,
    /// OpenMPI's mpirun (`OMPI_COMM_WORLD_RANK`, `_SIZE`, `_LOCAL_RANK`).
    OpenMpi,
    /// Slurm's srun (`SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`).
    Slurm,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RendezvousError {
    #[error("no launcher environment: set RANK and WORLD_SIZE (torchrun), or start under mpirun (OMPI_COMM_WORLD_*) or srun (SLURM_PROCID, SLURM_NTASKS)")]
    NoLauncher,
    #[error("environment variable {name}={value:?}: {why}")]
    Bad { name: &'static str, value: String, why: &'static str },
    #[error("environment variable MASTER_ADDR is not set: the address of rank 0's host, where the ranks meet")]
    NoMasterAddr,
}

/// torchrun's default `MASTER_PORT` (torch.distributed's `TCPStoreOptions::kDefaultPort`).
pub const DEFAULT_MASTER_PORT: u16 = 29500;

impl Rendezvous {
    /// From this process's environment.
    ///
    /// # Errors
    /// No launcher's variables, a value that is not a number (or a rank outside the world), or
    /// no `MASTER_ADDR`.
    pub fn from_env() -> Result<Self, RendezvousError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// From `lookup`; the launchers are tried in order torchrun, OpenMPI, Slurm: mpirun inside
    /// a Slurm allocation sets both OpenMPI's variables and (inherited) Slurm's, and the more
    /// specific launcher wins.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, RendezvousError> {
        const LAUNCHERS: [(Launcher, [&str; 3]); 3] = [
            (Launcher::Torchrun, ["RANK", "WORLD_SIZE", "LOCAL_RANK"]),
            (
                Launcher::OpenMpi,
                ["OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"],
            ),
            (Launcher::Slurm, ["SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"]),
        ];
        let number = |name: &'static str| -> Result<Option<usize>, RendezvousError> {
            lookup(name)
                .map(|value| {
                    value.trim().parse::<usize>().map_err(|_| RendezvousError::Bad {
                        name,
                        value,
                        why: "not a non-negative integer",
                    })
                })
                .transpose()
        };
        let (launcher, [rank_var, world_var, local_var]) = LAUNCHERS
            .into_iter()
            .find(|(_, vars)| lookup(vars[0]).is_some())
            .ok_or(RendezvousError::NoLauncher)?;
        let rank = number(rank_var)?.expect("present");
        let world_size = number(world_var)?.ok_or(RendezvousError::NoLauncher)?;
        if rank >= world_size {
            return Err(RendezvousError::Bad {
                name: rank_var,
                value: rank.to_string(),
                why: "not below the world size",
            });
        }
        let local_rank = number(local_var)?.unwrap_or(0);
        let master_addr = lookup("MASTER_ADDR")
            .filter(|a| !a.trim().is_empty())
            .ok_or(RendezvousError::NoMasterAddr)?;
        let master_port = match lookup("MASTER_PORT") {
            None => DEFAULT_MASTER_PORT,
            Some(value) => value.trim().parse::<u16>().map_err(|_| RendezvousError::Bad {
                name: "MASTER_PORT",
                value,
                why: "not a port number (0-65535)",
            })?,
        };
        Ok(Self { rank, world_size, local_rank, launcher, master_addr, master_port })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn torchrun_wins_over_slurm_and_openmpi_over_slurm() {
        let torchrun = [
            ("RANK", "3"),
            ("WORLD_SIZE", "4"),
            ("LOCAL_RANK", "1"),
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "1"),
            ("MASTER_ADDR", "node1"),
            ("MASTER_PORT", "1234"),
        ];
        let r = Rendezvous::from_lookup(env(&torchrun)).unwrap();
        assert_eq!((r.rank, r.world_size, r.local_rank, r.launcher), (3, 4, 1, Launcher::Torchrun));
        assert_eq!((r.master_addr.as_str(), r.master_port), ("node1", 1234));
        let mpirun = [
            ("OMPI_COMM_WORLD_RANK", "2"),
            ("OMPI_COMM_WORLD_SIZE", "8"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "0"),
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "1"),
            ("MASTER_ADDR", "h"),
        ];
        let r = Rendezvous::from_lookup(env(&mpirun)).unwrap();
        assert_eq!((r.rank, r.world_size, r.launcher), (2, 8, Launcher::OpenMpi));
        assert_eq!(r.master_port, DEFAULT_MASTER_PORT);
    }

    #[test]
    fn bad_values_are_named() {
        let vars = [("SLURM_PROCID", "x"), ("SLURM_NTASKS", "2"), ("MASTER_ADDR", "h")];
        let err = Rendezvous::from_lookup(env(&vars)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable SLURM_PROCID=\"x\": not a non-negative integer"
        );
        let vars = [("RANK", "2"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "h")];
        assert!(matches!(
            Rendezvous::from_lookup(env(&vars)),
            Err(RendezvousError::Bad { name: "RANK", .. })
        ));
        let vars = [("RANK", "0"), ("WORLD_SIZE", "2")];
        assert_eq!(Rendezvous::from_lookup(env(&vars)), Err(RendezvousError::NoMasterAddr));
        assert_eq!(Rendezvous::from_lookup(env(&[])), Err(RendezvousError::NoLauncher));
    }
}
