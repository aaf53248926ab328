//! What a rank's numbers depend on beyond its configuration: the shared libraries the process
//! actually loaded (from `/proc/self/maps`: the resolved path, a version and the file's size),
//! the kernel's and the GPU and network drivers' versions, and the environment modules loaded
//! (`LOADEDMODULES`). Comparisons across system upgrades read it to say what changed.
//!
//! Versions are found, in order: from the resolved file name (`libnccl.so.2.27.7` gives
//! `2.27.7`), from libtorch's `version.py` beside its `lib/` folder (the PyPI wheel's layout),
//! or from the Python wheel the library came with (`site-packages/nvidia/nccl/lib/...` is
//! `nvidia_nccl_*-<version>.dist-info`). A library none of these names has no version; its
//! size still tells two builds apart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One shared library mapped into the process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadedLibrary {
    /// The file name up to `.so` (`libnccl.so`, `libtorch_cpu.so`): stable across versions,
    /// the key two fingerprints are matched by.
    pub name: String,
    /// The resolved (symlink-free) path the process mapped.
    pub path: String,
    /// Its version, from the soname, libtorch's build or the wheel it came from; `None` if none is found.
    pub version: Option<String>,
    /// Size of the mapped file.
    pub size_bytes: u64,
}

/// A rank's fingerprint (see the module's documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fingerprint {
    /// By name; the process's own executable is not among them.
    pub libraries: Vec<LoadedLibrary>,
    /// `kernel` (`/proc/sys/kernel/osrelease`), `rocm` (`$ROCM_PATH/.info/version`), and the
    /// version of each loaded driver module of [`DRIVER_MODULES`] (`/sys/module/<m>/version`;
    /// NVIDIA's from `/proc/driver/nvidia/version`).
    pub drivers: BTreeMap<String, String>,
    /// `LOADEDMODULES`, split at `:` (Lmod's and Environment Modules' list).
    pub modules: Vec<String>,
}

/// Kernel modules whose versions change what collectives and kernels do: GPU drivers and the
/// Slingshot (CXI) and InfiniBand network stacks.
pub const DRIVER_MODULES: [&str; 6] =
    ["nvidia", "amdgpu", "cxi_ss1", "cxi_core", "mlx5_core", "ib_core"];

impl Fingerprint {
    /// This process's fingerprint, read now. Files that cannot be read leave their entries out
    /// (a machine without `/proc` gives an empty list, never an error).
    pub fn of_this_process() -> Self {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        let mut drivers = BTreeMap::new();
        let read = |path: &str| std::fs::read_to_string(path).ok().map(|s| s.trim().to_string());
        if let Some(kernel) = read("/proc/sys/kernel/osrelease") {
            drivers.insert("kernel".to_string(), kernel);
        }
        let rocm = std::env::var("ROCM_PATH").unwrap_or_else(|_| "/opt/rocm".into());
        if let Some(version) = read(&format!("{rocm}/.info/version")) {
            drivers.insert("rocm".to_string(), version);
        }
        for module in DRIVER_MODULES {
            if let Some(version) = read(&format!("/sys/module/{module}/version")) {
                drivers.insert(module.to_string(), version);
            }
        }
        if let Some(nvrm) = read("/proc/driver/nvidia/version").and_then(|s| nvidia_version(&s)) {
            drivers.insert("nvidia".to_string(), nvrm);
        }
        let modules = std::env::var("LOADEDMODULES")
            .map(|m| m.split(':').filter(|s| !s.is_empty()).map(String::from).collect())
            .unwrap_or_default();
        Self { libraries: loaded_libraries(&maps), drivers, modules }
    }
}

/// The libraries named in a `/proc/<pid>/maps` text, one entry per file, sorted by name.
pub fn loaded_libraries(maps: &str) -> Vec<LoadedLibrary> {
    let mut by_path: BTreeMap<PathBuf, LoadedLibrary> = BTreeMap::new();
    for line in maps.lines() {
        // address perms offset dev inode path: the path is the sixth field, and may hold spaces.
        let Some(path) = line.splitn(6, char::is_whitespace).nth(5).map(str::trim_start) else {
            continue;
        };
        let Some(name) = library_name(path) else { continue };
        let path = Path::new(path);
        if by_path.contains_key(path) {
            continue;
        }
        let resolved = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let size_bytes = std::fs::metadata(&resolved).map(|m| m.len()).unwrap_or(0);
        let version = soname_version(&resolved)
            .or_else(|| torch_version(&resolved))
            .or_else(|| wheel_version(&resolved));
        by_path.insert(
            path.to_path_buf(),
            LoadedLibrary { name, path: resolved.display().to_string(), version, size_bytes },
        );
    }
    let mut libraries: Vec<LoadedLibrary> = by_path.into_values().collect();
    libraries.sort_by(|a, b| (&a.name, &a.path).cmp(&(&b.name, &b.path)));
    libraries.dedup_by(|a, b| a.path == b.path);
    libraries
}

/// `libfoo.so` for a path whose file name is `libfoo.so` or `libfoo.so.1.2`; `None` for
/// anything else (the executable, `[heap]`, deleted files, Python modules without `lib`).
fn library_name(path: &str) -> Option<String> {
    if !path.starts_with('/') || path.ends_with(" (deleted)") {
        return None;
    }
    let file = Path::new(path).file_name()?.to_str()?;
    let (stem, _) =
        file.split_once(".so").filter(|(_, rest)| rest.is_empty() || rest.starts_with('.'))?;
    Some(format!("{stem}.so"))
}

/// `2.27.7` from `.../libnccl.so.2.27.7`.
fn soname_version(resolved: &Path) -> Option<String> {
    let file = resolved.file_name()?.to_str()?;
    let version = file.split_once(".so.")?.1;
    (!version.is_empty() && version.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .then(|| version.to_string())
}

/// libtorch's version from the `version.py` of the PyPI wheel (`torch/lib/libtorch_cpu.so`
/// beside `torch/version.py`) or the `build-version` file of a libtorch archive.
fn torch_version(resolved: &Path) -> Option<String> {
    let file = resolved.file_name()?.to_str()?;
    if !(file.starts_with("libtorch") || file.starts_with("libc10")) {
        return None;
    }
    let root = resolved.parent()?.parent()?;
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        let quoted = text.lines().find_map(|l| l.strip_prefix("__version__ = "))?;
        return Some(quoted.trim().trim_matches(['\'', '"']).to_string());
    }
    std::fs::read_to_string(root.join("build-version")).ok().map(|v| v.trim().to_string())
}

/// The version of the Python wheel a library under `site-packages/<top>/<sub>/...` came with:
/// the `<top>_<sub>*-<version>.dist-info` folder beside `<top>` (NVIDIA's wheels:
/// `nvidia/nccl/lib/libnccl.so.2` is `nvidia_nccl_cu13-2.27.7.dist-info`).
fn wheel_version(resolved: &Path) -> Option<String> {
    let components: Vec<&str> = resolved.iter().filter_map(|c| c.to_str()).collect();
    let at = components.iter().position(|c| *c == "site-packages" || *c == "dist-packages")?;
    let site: PathBuf = components[..=at].iter().collect();
    let prefix = match components.get(at + 1..at + 3)? {
        [top, sub] => format!("{top}_{sub}").to_lowercase().replace('-', "_"),
        _ => return None,
    };
    std::fs::read_dir(site).ok()?.filter_map(Result::ok).find_map(|entry| {
        let name = entry.file_name().to_string_lossy().into_owned();
        let (package, version) = name.strip_suffix(".dist-info")?.rsplit_once('-')?;
        package.to_lowercase().replace('-', "_").starts_with(&prefix).then(|| version.to_string())
    })
}

/// `570.86.15` from the first line of `/proc/driver/nvidia/version` ("NVRM version: NVIDIA
/// UNIX x86_64 Kernel Module  570.86.15  ...").
fn nvidia_version(text: &str) -> Option<String> {
    let line = text.lines().next()?;
    let rest = line.split_once("Kernel Module")?.1;
    rest.split_whitespace().next().map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions_come_from_the_mapped_files() {
        let maps = "7f00-7f01 r--p 00000000 08:01 12 /usr/lib/x86_64-linux-gnu/libc.so.6\n\
                    7f01-7f02 r-xp 00001000 08:01 12 /usr/lib/x86_64-linux-gnu/libc.so.6\n\
                    7f02-7f03 rw-p 00000000 00:00 0 [heap]\n\
                    7f03-7f04 r--p 00000000 08:01 13 /usr/bin/shardsweep\n\
                    7f04-7f05 r--p 00000000 08:01 14 /opt/x/libgone.so.1 (deleted)\n";
        let libraries = loaded_libraries(maps);
        assert_eq!(libraries.len(), 1, "{libraries:?}");
        assert_eq!(libraries[0].name, "libc.so");
        assert!(libraries[0].size_bytes > 0, "{libraries:?}");
        assert_eq!(library_name("/a/libnccl.so.2.27.7").as_deref(), Some("libnccl.so"));
        assert_eq!(library_name("/a/libfoo.socket"), None);
        assert_eq!(soname_version(Path::new("/a/libnccl.so.2.27.7")).as_deref(), Some("2.27.7"));
        assert_eq!(soname_version(Path::new("/a/libtorch_cpu.so")), None);
    }

    #[test]
    fn the_nvidia_driver_version_is_read_from_its_banner() {
        let text = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  570.86.15  Fri Jan 10 2025\nGCC version: gcc 12\n";
        assert_eq!(nvidia_version(text).as_deref(), Some("570.86.15"));
    }

    #[test]
    fn a_wheel_library_takes_its_wheels_version() {
        let site = tempfile_dir("wheel").join("lib/python3.11/site-packages");
        let lib = site.join("nvidia/nccl/lib");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::create_dir_all(site.join("nvidia_nccl_cu13-2.27.7.dist-info")).unwrap();
        std::fs::create_dir_all(site.join("torch/lib")).unwrap();
        std::fs::write(site.join("torch/version.py"), "__version__ = '2.13.0+cu130'\n").unwrap();
        assert_eq!(wheel_version(&lib.join("libnccl.so.2")).as_deref(), Some("2.27.7"));
        let torch = site.join("torch/lib/libtorch_cpu.so");
        assert_eq!(torch_version(&torch).as_deref(), Some("2.13.0+cu130"));
    }

    fn tempfile_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("shardsweep-fp-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }
}
