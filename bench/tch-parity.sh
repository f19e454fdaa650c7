#!/usr/bin/env bash
# Runs the cell of experiments/parity.toml on Flex (the default build) and on LibTorch (the
# build of bench/build-tch.sh) and checks that the two test accuracies differ by at most
# $TOLERANCE (default 0.02: both start from the same weights and batches; rounding differs).
set -euo pipefail
cd "$(dirname "$0")/.."
tolerance="${TOLERANCE:-0.02}"
# The default build's target folder, as .ci/run keeps it (cargo's own default otherwise).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HARNESS_TARGET_DIR:-/var/tmp/transfer-harness-target}}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
accuracy() { sed -n 's/.*test accuracy \([0-9.]*\).*/\1/p' "$1" | tail -1; }
cargo run --release -q -p harness -- run experiments/parity.toml --jobs 1 --threads 1 \
  --results "$work/flex" --reports "$work/reports-flex" 2>&1 | tee "$work/flex.log"
bench/tch harness run experiments/parity.toml --backend tch --jobs 1 --threads 1 \
  --results "$work/tch" --reports "$work/reports-tch" 2>&1 | tee "$work/tch.log"
flex=$(accuracy "$work/flex.log")
tch=$(accuracy "$work/tch.log")
python3 - "$flex" "$tch" "$tolerance" <<'PY'
import sys
flex, tch, tol = map(float, sys.argv[1:])
print(f"parity: flex {flex:.4f}, tch {tch:.4f}, difference {abs(flex - tch):.4f} (tolerance {tol})")
sys.exit(0 if abs(flex - tch) <= tol else 1)
PY
