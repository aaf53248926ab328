#!/usr/bin/env bash
# Installs everything shardsweep needs on a Debian 12 machine, idempotently:
# system libraries (OpenMPI, HDF5, clang for bindgen, fonts for plots), Slurm for the tests'
# local cluster (slurm/local/cluster.sh starts it), and a project-local
# Python virtualenv that provides libtorch (the PyPI torch wheel matching the pinned tch).
set -euo pipefail
cd "$(dirname "$0")"

TORCH_VERSION=2.13.0   # tch 0.26 binds exactly this libtorch
APT_PACKAGES=(libopenmpi-dev openmpi-bin libhdf5-dev hdf5-tools libclang-dev clang pkg-config
              libgloo-dev   # gloo headers for the c10d shim (libtorch ships none)
              libfontconfig1-dev fonts-dejavu-core python3-venv
              munge slurmctld slurmd slurm-client)   # the tests' one-node Slurm cluster

log() { echo "[setup] $*" >&2; }
sudo_() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

command -v cargo >/dev/null || { echo "[setup] cargo not found: install Rust toolchain (rustup) first" >&2; exit 1; }
# The test command checks formatting and lints too.
for c in fmt clippy; do
  cargo "$c" --version >/dev/null 2>&1 || rustup component add "$([ "$c" = fmt ] && echo rustfmt || echo clippy)"
done

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing system packages: ${missing[*]}"
  sudo_ apt-get update -qq
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
  log "installing torch==$TORCH_VERSION into .venv (libtorch for tch)"
  .venv/bin/pip install -q --disable-pip-version-check "torch==$TORCH_VERSION"
fi
# The CUDA C runtime's and CCCL's headers (header-only wheels of the CUDA version the torch
# wheel was built with) let build.rs compile ProcessGroupNCCL into the c10d shim, so every
# build, with or without a GPU, compiles and links the NCCL path that GPU runs use.
cuda_toolkit=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('cuda-toolkit'))" 2>/dev/null || true)
if [ -n "$cuda_toolkit" ] && ! .venv/bin/python -c "import importlib.metadata as m; m.version('nvidia-cuda-crt'); m.version('nvidia-cuda-cccl')" 2>/dev/null; then
  log "installing CUDA $cuda_toolkit headers into .venv (crt, cccl)"
  .venv/bin/pip install -q --disable-pip-version-check "cuda-toolkit[crt,cccl]==$cuda_toolkit"
fi
# h5py lets the tests check that record files are readable by the Python ecosystem.
.venv/bin/python -c "import h5py" 2>/dev/null || .venv/bin/pip install -q --disable-pip-version-check "h5py==3.12.1"
# scikit-learn ships a small real labelled image set (the UCI handwritten digits) that
# `shardsweep data digits` turns into images for pretraining and the linear probe.
.venv/bin/python -c "import sklearn" 2>/dev/null || .venv/bin/pip install -q --disable-pip-version-check "scikit-learn==1.6.1"
# The tidy store folder must read as one dataset in every reader the README names: a test
# reads it with Polars, pandas (on pyarrow), pyarrow.dataset and DuckDB.
for pin in "pyarrow==26.0.1" "polars==2.1.0" "pandas==3.1.1" "duckdb==2.0.1"; do
  .venv/bin/python -c "import importlib.metadata as m, sys; sys.exit(m.version('${pin%%==*}') != '${pin##*==}')" 2>/dev/null \
    || .venv/bin/pip install -q --disable-pip-version-check "$pin"
done
# A stable path for cargo (.cargo/config.toml) whatever the Python minor version is.
torch_dir=$(.venv/bin/python -c "import os, torch; print(os.path.dirname(torch.__file__))")
ln -sfn "$torch_dir" .venv/libtorch
log "ready"
