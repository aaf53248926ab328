#!/usr/bin/env bash
# The single-GPU benchmark on a machine that has only a PyTorch installation (no Rust, no MPI,
# no HDF5, no network), in two steps:
#
#   src/bench/portable.sh build TORCH_DIR OUT_DIR   # here: a binary for that PyTorch, in OUT_DIR
#   OUT_DIR/portable.sh run [BENCH ARGS...]         # there: bench --pytorch-eager on its GPU
#
# `run` first runs the unit tests that need a GPU (device events and allocator figures, an NCCL
# collective's stream time), built beside the binary as `device-checks`, and stops if they fail.
#
# TORCH_DIR is a `torch/` folder of the same PyTorch version as the target's (a wheel installed
# here with `pip install torch==X`, plus `cuda-toolkit[crt,cccl]` of its CUDA version for the
# NCCL path, as the README shows): its headers and libraries are built against,
# and the target's own libraries are used at run time (LD_LIBRARY_PATH). tch binds one libtorch
# version per release, so the build selects it: 0.26 for torch 2.13, 0.24 for torch 2.11 (their
# APIs, as the harness uses them, are the same). HDF5 is linked statically and MPI left out, so
# the binary needs only libtorch, glibc and libstdc++ (as new as this machine's: Debian 12,
# glibc 2.36).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)

build() {
  local torch_dir out version tch repo
  torch_dir=$(cd "$1" && pwd)
  out=$2
  version=$(sed -n "s/^__version__ = ['\"]\([0-9.]*\).*/\1/p" "$torch_dir/version.py")
  case "$version" in
    2.13.*) tch=0.26.0 ;;
    2.11.*) tch=0.24.0 ;;
    *) echo "portable.sh: no tch release for torch $version (2.11 and 2.13 are known)" >&2; exit 2 ;;
  esac
  repo=$(git -C "$here" rev-parse --show-toplevel)
  work=$(mktemp -d)  # global: the EXIT trap reads it after build returns
  trap 'rm -rf "$work"' EXIT
  # The working tree as it is now: tracked and new files that git does not ignore.
  git -C "$repo" ls-files -z -co --exclude-standard \
    | (cd "$repo" && tar --null -T - --ignore-failed-read -cf -) | tar -x -C "$work"
  sed -i "s/^tch = \"=0.26.0\"/tch = \"=$tch\"/; s/^torch-sys = \"=0.26.0\"/torch-sys = \"=$tch\"/" \
    "$work/Cargo.toml"
  grep -qx "tch = \"=$tch\"" "$work/Cargo.toml" && grep -qx "torch-sys = \"=$tch\"" "$work/Cargo.toml" || {
    echo "portable.sh: Cargo.toml's tch and torch-sys lines are not the pinned '= \"=0.26.0\"' form" >&2
    exit 2
  }
  local commit
  commit=$(git -C "$repo" rev-parse HEAD)
  [ -z "$(git -C "$repo" status --porcelain --untracked-files=no)" ] || commit="$commit-dirty"
  mkdir -p "$out"
  command -v cmake >/dev/null || {
    echo "portable.sh: static HDF5 is built with cmake: install it (apt-get install cmake, or pip install cmake)" >&2
    exit 2
  }
  echo "[portable] building against torch $version (tch $tch) from $torch_dir" >&2
  # One target folder per torch version, kept between builds. A torch installed without its
  # CUDA wheels here lacks the libraries libtorch_cuda needs; the target has them, so the link
  # leaves them to run time.
  local features=(-p shardsweep --no-default-features --features gloo,cuda,hdf5/static) checks
  cargo_() {
    (cd "$work" && LIBTORCH="$torch_dir" CARGO_TARGET_DIR="$repo/target/portable-$version" \
      SHARDSWEEP_GIT_COMMIT="$commit" \
      RUSTFLAGS="-C link-arg=-Wl,--allow-shlib-undefined" \
      cargo "$@" --release "${features[@]}")
  }
  cargo_ build
  # The library's unit tests as one executable (cargo names it with a hash: ask cargo).
  checks=$(cargo_ test --lib --no-run --message-format=json \
    | sed -n 's/.*"profile":{[^}]*"test":true[^}]*}.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
  [ -x "$checks" ] || { echo "portable.sh: cargo named no unit-test executable" >&2; exit 2; }
  # `shardsweep` runs the commands that never train and becomes `shardsweep-torch` beside it
  # for the rest.
  cp "$repo/target/portable-$version/release/"{shardsweep,shardsweep-torch} "$out/"
  cp "$checks" "$out/device-checks"
  strip "$out/shardsweep" "$out/shardsweep-torch" "$out/device-checks"
  # grep reads all of nm's output (with -q it may leave early, and pipefail would see SIGPIPE).
  if nm -D "$out/shardsweep-torch" | grep ProcessGroupNCCL >/dev/null; then
    echo "[portable] NCCL compiled in" >&2
  else
    echo "[portable] NCCL left out (no CUDA and NCCL headers beside torch/: install the wheel" \
      "with its dependencies and cuda-toolkit[crt,cccl] of its CUDA version); the GPU checks" \
      "skip NCCL's" >&2
  fi
  cp "$here/portable.sh" "$out/"
  echo "$version" > "$out/torch_version"
  echo "[portable] $out: $(du -sh "$out" | cut -f1); libraries outside libtorch:" >&2
  ldd "$out/shardsweep-torch" | grep -v "$torch_dir\|torch_\|libc10\|nvidia" >&2 || true
}

run() {
  local dir torch_dir libs
  dir=$(cd "$(dirname "$0")" && pwd)
  torch_dir=$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))')
  local want have
  want=$(cat "$dir/torch_version")
  have=$(python3 -c 'import torch; print(torch.__version__.split("+")[0])')
  if [ "$want" != "$have" ]; then
    echo "portable.sh: built for torch $want, this python3 has $have" >&2
    exit 2
  fi
  # libtorch and the CUDA libraries its wheel depends on (nvidia/*/lib beside torch/).
  libs="$torch_dir/lib"
  for lib in "$torch_dir"/../nvidia/*/lib; do [ -d "$lib" ] && libs="$libs:$lib"; done
  export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # torchrun as this python3 runs it (its script may not be on PATH).
  local torchrun
  torchrun=$(mktemp)
  printf '#!/bin/sh\nexec python3 -m torch.distributed.run "$@"\n' > "$torchrun"
  chmod +x "$torchrun"
  "$dir/shardsweep" --version
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")'
  # The tests that need a GPU. Without one they check only the CPU's side; where this python's
  # torch sees a GPU, they must see it too (a libtorch loaded without CUDA fails them).
  if python3 -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    export SHARDSWEEP_REQUIRE_GPU=1
  fi
  "$dir/device-checks" --test-threads 1 c10d::tests:: device::tests::
  if [ $# -eq 0 ]; then
    # The study's single-GPU figures: ViT-Base and ViT-Huge MAE, bf16, micro-batch 32.
    set -- --model vit-base,vit-huge --device cuda --param-dtype bf16 --micro-batch 32 \
      --steps 20 --rounds 2 --peak-flop-per-s 989e12
  fi
  "$dir/shardsweep" bench --pytorch-eager --torchrun "$torchrun" "$@"
}

case "${1:-}" in
  build) shift; [ $# -eq 2 ] || { echo "usage: $0 build TORCH_DIR OUT_DIR" >&2; exit 2; }; build "$@" ;;
  run) shift; run "$@" ;;
  *) echo "usage: $0 build TORCH_DIR OUT_DIR | $0 run [bench args]" >&2; exit 2 ;;
esac
