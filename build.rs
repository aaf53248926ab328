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
        #[cfg(any(feature = "gloo", feature = "cuda"))]
        c10d_shim(Path::new(&lib));
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

/// Compiles src/comm/c10d_shim.cpp against libtorch's headers (C++17 and the C++11 ABI, as the
/// PyPI wheels are built). Gloo needs gloo's own headers, which libtorch does not ship (Debian's
/// `libgloo-dev` puts them in /usr/include; `SHARDSWEEP_GLOO_INCLUDE` names another folder).
/// NCCL needs the CUDA runtime's and NCCL's headers: `SHARDSWEEP_CUDA_INCLUDE`, a `:`-separated
/// list of folders.
#[cfg(any(feature = "gloo", feature = "cuda"))]
fn c10d_shim(lib: &Path) {
    let include = lib.join("../include");
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        .file("src/comm/c10d_shim.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        // libtorch's headers are not ours to warn about.
        .warnings(false)
        .flag_if_supported("-Wno-c++20-extensions");
    if cfg!(feature = "gloo") {
        build.define("USE_C10D_GLOO", None);
        if let Ok(dir) = env::var("SHARDSWEEP_GLOO_INCLUDE") {
            build.include(dir);
        }
    }
    if cfg!(feature = "cuda") {
        build
            .define("USE_C10D_NCCL", None)
            .define("USE_CUDA", None)
            .define("SHARDSWEEP_NCCL", None);
        for dir in env::var("SHARDSWEEP_CUDA_INCLUDE").unwrap_or_default().split(':') {
            if !dir.is_empty() {
                build.include(dir);
            }
        }
        for backend in ["torch_cuda", "c10_cuda"] {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-l{backend},--as-needed");
        }
    }
    build.compile("shardsweep_c10d");
    // The shim's symbols come from these; listed after it so the linker resolves them.
    for name in ["torch_cpu", "c10"] {
        println!("cargo:rustc-link-lib=dylib={name}");
    }
    println!("cargo:rerun-if-changed=src/comm/c10d_shim.cpp");
    println!("cargo:rerun-if-env-changed=SHARDSWEEP_GLOO_INCLUDE");
    println!("cargo:rerun-if-env-changed=SHARDSWEEP_CUDA_INCLUDE");
}
