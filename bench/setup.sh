#!/usr/bin/env bash
# Installs the PyTorch (and timm, transformers and torchcrepe, for the networks pre-trained elsewhere) that `harness bench`
# measures the harness against, in a virtual
# environment of its own (default /var/tmp/harness-bench-venv; give another path as $1).
# The wheel on the default index is the CUDA build (about 4 GB to download); it runs on CPU.
set -euo pipefail
venv="${1:-/var/tmp/harness-bench-venv}"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --disable-pip-version-check -q torch==2.9.0 torchvision==0.24.0 timm==1.0.22 \
  transformers==4.57.1 torchcrepe==0.0.24 torchaudio==2.9.0
echo "PyTorch installed; run: harness bench --python $venv/bin/python"
