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
# torch-free dependencies of the tests/test_realmodels_more.py packages (pinned): torch-pitch-shift imports primePy,
# torch-stoi imports pystoi's constants and third-octave matrix, bigvgan imports matplotlib (plotting utils)
$PIP -c "$CONS" primePy==1.3 pystoi==0.4.1 matplotlib==3.11.2
# the model packages themselves, without dependencies (they all depend on torch)
$PIP --no-deps openunmix==1.3.0 vocos==0.1.0 encodec==0.1.1 openai-whisper==20250625 speechbrain==1.1.2 \
  auraloss==0.4.0 torchlibrosa==0.1.0
# tests/test_realmodels_more.py: codec / vocoder discriminators, separation, DSP toolkits, metrics, beamforming
$PIP --no-deps demucs==4.1.0 julius==0.2.8 kymatio==0.3.0 torch-stoi==0.2.3 torch-pitch-shift==1.2.5 \
  fast-bss-eval==0.1.4 nara-wpe==0.0.11 diffsptk==4.0.1 hear21passt==0.0.26 bigvgan==2.4.1 dasp-pytorch==0.0.1 \
  nnAudio==0.3.4

$VPY -c 'import openunmix, vocos, whisper, speechbrain, auraloss, torchlibrosa; print("real-model packages ok")'
# (kymatio 0.3's package __init__ imports scipy.special.sph_harm, gone in scipy 1.17: the test aliases it first)
$VPY -c 'import importlib.util; assert importlib.util.find_spec("kymatio")
import demucs.htdemucs, julius, torch_stoi, torch_pitch_shift, fast_bss_eval, nara_wpe.torch_wpe
import diffsptk, hear21passt.models.preprocess, bigvgan.discriminators, dasp_pytorch, nnAudio.features
print("more real-model packages ok")'
touch "$STAMP"
