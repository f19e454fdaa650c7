#!/usr/bin/env bash
# Builds `harness` with the optional LibTorch backend (`--backend tch`, cargo feature `tch`)
# against the PyTorch 2.9.0 that bench/setup.sh installs with pip: nothing is downloaded by the
# build itself. The default build never needs any of this.
#
#   bench/build-tch.sh            # venv at /var/tmp/harness-bench-venv, target /var/tmp/transfer-harness-tch
#   bench/tch harness run --backend tch experiments/smoke.toml
#
# The tch build has its own target folder: turning the feature on changes features of shared
# dependencies, and in the default target folder it would rebuild most of the default build.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${HARNESS_BENCH_VENV:-/var/tmp/harness-bench-venv}"
target="${HARNESS_TCH_TARGET_DIR:-/var/tmp/transfer-harness-tch}"
if ! "$venv/bin/python" -c 'import torch' 2>/dev/null; then
  bench/setup.sh "$venv"
fi
version=$("$venv/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])')
if [ "$version" != "2.9.0" ]; then
  echo "burn-tch 0.22 needs PyTorch 2.9.0; $venv has $version" >&2
  exit 1
fi
# torch-sys finds LibTorch through the python first on PATH.
PATH="$venv/bin:$PATH" LIBTORCH_USE_PYTORCH=1 CARGO_TARGET_DIR="$target" \
  cargo build --release -p harness --features tch
echo "built $target/release/harness; run it through bench/tch (it puts torch's lib folder on the library path)"
