#!/usr/bin/env bash
# Install the real third-party audio model packages that the `realmodel` tests build (random weights, no hub
# downloads) into .venv. Safe to repeat. torch-dependent packages go in with --no-deps so pip can never
# replace the pinned CPU torch; everything else is resolved against constraints that pin torch and numpy.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VPY=${VPY:-.venv/bin/python}
STAMP=.venv/.specrewrite-realmodels-ok
if [ -f "$STAMP" ] && [ "$STAMP" -nt scripts/install_realmodels.sh ]; then
  exit 0
fi
PIP="$VPY -m pip install --disable-pip-version-check -q"
CONS=$(mktemp)
trap 'rm -f "$CONS"' EXIT
$VPY -c 'import torch, numpy; print("torch==" + torch.__version__.split("+")[0]); print("numpy==" + numpy.__version__)' > "$CONS"

# torch-free dependencies of the model packages
$PIP -c "$CONS" einops scipy PyYAML tqdm more-itertools tiktoken numba librosa HyperPyYAML sentencepiece \
  joblib soundfile requests huggingface-hub safetensors packaging
# the model packages themselves, without dependencies (they all depend on torch)
$PIP --no-deps openunmix==1.3.0 vocos==0.1.0 encodec==0.1.1 openai-whisper==20250625 speechbrain==1.1.2 \
  auraloss==0.4.0 torchlibrosa==0.1.0

$VPY -c 'import openunmix, vocos, whisper, speechbrain, auraloss, torchlibrosa; print("real-model packages ok")'
touch "$STAMP"
