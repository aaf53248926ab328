//! Link-time plumbing for libtorch and provenance baked into the binary.
use std::{env, path::Path, process::Command};

fn main() {
    // The linker keeps every function that a shared library in the link could call back into
    // (libtorch calls inline functions of tch's C++ wrapper), and those reference libtorch, so
    // `shardsweep` and `shardsweep-lite` would load it though they never call it. Symbols of
    // static archives and rlibs are not exported from these binaries: their unused parts go,
    // libtorch with them.
    for bin in ["shardsweep", "shardsweep-lite"] {
        println!("cargo:rustc-link-arg-bin={bin}=-Wl,--exclude-libs=ALL");
    }
    // torch-sys exports libtorch's lib folder to direct dependents; a RUNPATH to it lets the
    // binary (and every MPI rank it launches) find libtorch without LD_LIBRARY_PATH.
    if let Ok(lib) = env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        // A CUDA/ROCm libtorch registers its device backend only if its library stays linked.
        for backend in ["torch_cuda", "torch_hip"] {
            if Path::new(&lib).join(format!("lib{backend}.so")).exists() {
                keep_linked(backend);
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
        native(Path::new(&lib));
    }
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    // A build of a copy without .git (src/bench/portable.sh) says which commit it copied.
    println!("cargo:rerun-if-env-changed=SHARDSWEEP_GIT_COMMIT");
    let commit = env::var("SHARDSWEEP_GIT_COMMIT").unwrap_or_else(|_| {
        let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
        let dirty =
            git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
        format!("{commit}{}", if dirty { "-dirty" } else { "" })
    });
    println!("cargo:rustc-env=SHARDSWEEP_GIT_COMMIT={commit}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/index");
}

/// Compiles the C++ parts against libtorch's headers (C++17 and the C++11 ABI, as the PyPI
/// wheels are built): src/metrics/device.cpp (device events and caching-allocator statistics,
/// through c10's device-generic interfaces), src/train/adamw.cpp (the fused AdamW kernel) and
/// src/train/backward.cpp (backward with a gradient, taking a leaf's gradient) always, and
/// src/comm/c10d_shim.cpp with the `gloo` or `cuda` feature. Gloo needs gloo's own headers, which libtorch does not ship (Debian's
/// `libgloo-dev` puts them in /usr/include; `SHARDSWEEP_GLOO_INCLUDE` names another folder).
/// NCCL needs a CUDA build of libtorch and the CUDA runtime's and NCCL's headers:
/// `SHARDSWEEP_CUDA_INCLUDE` (a `:`-separated list of folders), else the `nvidia/*/include`
/// folders that a PyPI CUDA wheel's packages put beside `torch/`. Without them the build leaves
/// NCCL out with a warning, and a point with backend nccl fails saying so.
fn native(lib: &Path) {
    let include = lib.join("../include");
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        .file("src/metrics/device.cpp")
        .file("src/train/adamw.cpp")
        .file("src/train/backward.cpp")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        // Our code with every common warning; libtorch's headers (and gloo's, CUDA's) are
        // system headers, not ours to warn about.
        .warnings(true)
        .extra_warnings(true)
        .flag_if_supported("-Wno-c++20-extensions");
    system_include(&mut build, &include);
    system_include(&mut build, &include.join("torch/csrc/api/include"));
    println!("cargo:rerun-if-changed=src/metrics/device.cpp");
    println!("cargo:rerun-if-changed=src/train/adamw.cpp");
    println!("cargo:rerun-if-changed=src/train/backward.cpp");
    println!("cargo:rerun-if-changed=src/ffi_guard.hpp");
    if cfg!(any(feature = "gloo", feature = "cuda")) {
        build.file("src/comm/c10d_shim.cpp");
        println!("cargo:rerun-if-changed=src/comm/c10d_shim.cpp");
    }
    if cfg!(feature = "gloo") {
        build.define("USE_C10D_GLOO", None);
        if let Ok(dir) = env::var("SHARDSWEEP_GLOO_INCLUDE") {
            system_include(&mut build, Path::new(&dir));
        }
    }
    // Code and tests that need ProcessGroupNCCL compiled in ask `cfg(shardsweep_nccl)`.
    println!("cargo::rustc-check-cfg=cfg(shardsweep_nccl)");
    if cfg!(feature = "cuda") {
        match cuda_includes(lib) {
            Ok(dirs) => {
                println!("cargo:rustc-cfg=shardsweep_nccl");
                build
                    .define("USE_C10D_NCCL", None)
                    .define("USE_CUDA", None)
                    .define("SHARDSWEEP_NCCL", None);
                for dir in dirs {
                    system_include(&mut build, &dir);
                }
                for backend in ["torch_cuda", "c10_cuda"] {
                    keep_linked(backend);
                }
            }
            Err(why) => println!("cargo:warning=NCCL left out of this build: {why}"),
        }
    }
    build.compile("shardsweep_native");
    // The C++ parts' symbols come from these; listed after them so the linker resolves them.
    for name in ["torch_cpu", "c10"] {
        println!("cargo:rustc-link-lib=dylib={name}");
    }
    println!("cargo:rerun-if-env-changed=SHARDSWEEP_GLOO_INCLUDE");
    println!("cargo:rerun-if-env-changed=SHARDSWEEP_CUDA_INCLUDE");
}

/// The folders holding `cuda_runtime_api.h`, the CUDA C runtime's headers and `nccl.h`, or why
/// NCCL cannot be built.
fn cuda_includes(lib: &Path) -> Result<Vec<std::path::PathBuf>, String> {
    if !lib.join("libtorch_cuda.so").exists() {
        return Err(format!("{} holds no libtorch_cuda.so (not a CUDA build)", lib.display()));
    }
    let dirs: Vec<std::path::PathBuf> = match env::var("SHARDSWEEP_CUDA_INCLUDE") {
        Ok(list) => list.split(':').filter(|d| !d.is_empty()).map(Into::into).collect(),
        Err(_) => {
            // The wheel's CUDA packages: nvidia/cu13/include (CUDA 13) or
            // nvidia/<library>/include (CUDA 12), with CCCL in include/cccl.
            let nvidia = lib.join("../../nvidia");
            let mut found = Vec::new();
            for entry in std::fs::read_dir(&nvidia).into_iter().flatten().flatten() {
                let dir = entry.path().join("include");
                if dir.is_dir() {
                    found.push(dir.join("cccl"));
                    found.push(dir);
                }
            }
            found.retain(|d| d.is_dir());
            found.sort();
            found
        }
    };
    for header in ["cuda_runtime_api.h", "crt/host_config.h", "nccl.h"] {
        if !dirs.iter().any(|d| d.join(header).exists()) {
            return Err(format!(
                "no {header} in {dirs:?} (set SHARDSWEEP_CUDA_INCLUDE; PyPI wheels: \
                 cuda-toolkit[crt,cccl] of libtorch's CUDA version)"
            ));
        }
    }
    Ok(dirs)
}

/// Links `library` into every target that may train (`shardsweep-torch`, tests and benches)
/// even though no symbol of it is referenced: a device backend registers itself when loaded.
/// `shardsweep` and `shardsweep-lite` run only commands that never train and link no part of
/// libtorch (the linker leaves out every library they reference nothing of), so they start
/// without loading any of it.
fn keep_linked(library: &str) {
    let arg = format!("-Wl,--no-as-needed,-l{library},--as-needed");
    println!("cargo:rustc-link-arg-bin=shardsweep-torch={arg}");
    for kind in ["tests", "benches"] {
        println!("cargo:rustc-link-arg-{kind}={arg}");
    }
}

/// `dir` as a system include folder (`-isystem`): its headers' warnings are not reported.
fn system_include(build: &mut cc::Build, dir: &Path) {
    build.flag("-isystem").flag(dir.as_os_str());
}
