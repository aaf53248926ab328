//! Link-time plumbing for libtorch and provenance baked into the binary.
use std::{env, path::Path, process::Command};

fn main() {
    // torch-sys exports libtorch's lib folder to direct dependents; a RUNPATH to it lets the
    // binary (and every MPI rank it launches) find libtorch without LD_LIBRARY_PATH.
    if let Ok(lib) = env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        // A CUDA/ROCm libtorch registers its device backend only if its library stays linked.
        for backend in ["torch_cuda", "torch_hip"] {
            if Path::new(&lib).join(format!("lib{backend}.so")).exists() {
                println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-l{backend},--as-needed");
            }
        }
        let version_file = Path::new(&lib).join("../version.py");
        let torch_version = std::fs::read_to_string(&version_file)
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| {
                    l.strip_prefix("__version__ = ")
                        .map(|v| v.trim_matches(['\'', '"']).to_string())
                })
            })
            .unwrap_or_else(|| "unknown".into());
        println!("cargo:rustc-env=SHARDSWEEP_LIBTORCH_VERSION={torch_version}");
        println!("cargo:rerun-if-changed={}", version_file.display());
    }
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    println!("cargo:rustc-env=SHARDSWEEP_GIT_COMMIT={commit}{}", if dirty { "-dirty" } else { "" });
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/index");
}
