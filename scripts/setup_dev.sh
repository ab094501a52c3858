#!/usr/bin/env bash
# Create (or update) the development virtual environment in .venv. Safe to repeat.
# Needs only a Python >= 3.10 on PATH (python3.11 preferred).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
VENV=${VENV:-.venv}
STAMP="$VENV/.specrewrite-dev-ok"

if [ -f "$STAMP" ] && [ "$STAMP" -nt scripts/setup_dev.sh ] && [ "$STAMP" -nt pyproject.toml ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
VPY="$VENV/bin/python"
PIP="$VPY -m pip install --disable-pip-version-check -q"

# torch is pinned here (and only here): an unpinned torch would pull the newest release with
# several GB of CUDA packages. The library itself accepts torch>=2.6.
$PIP "torch==2.13.0"
TORCH_VER=$($VPY -c 'import torch; print(torch.__version__.split("+")[0])')
CONS=$(mktemp)
trap 'rm -f "$CONS"' EXIT
echo "torch==$TORCH_VER" > "$CONS"

# The package itself (editable) with its ONNX / OpenVINO / Core ML extras and the test tools (every ONNX file
# the tests export is then also run in OpenVINO, as specrewrite.export does where it is installed).
$PIP -c "$CONS" -e ".[onnx,openvino,coreml,dev]"
# The on-device targets (specrewrite.export to .tflite / .pte), with torch held by the constraint.
$PIP -c "$CONS" -e ".[litert,executorch]"

# torchaudio: the registry's Linux wheel is a CUDA build. Install it without dependencies (so pip
# cannot touch torch) and delete its native libraries: the transforms we need are pure Python and
# import fine on a CPU-only torch once the CUDA .so files are gone.
$PIP --no-deps "torchaudio==2.11.0"
TA_LIB=$($VPY -c 'import importlib.util, os; s = importlib.util.find_spec("torchaudio"); print(os.path.join(os.path.dirname(s.origin), "lib"))')
rm -f "$TA_LIB"/*.so

$VPY -c 'import torch, torchaudio, onnx, onnxruntime, openvino, coremltools, hypothesis, litert_torch, executorch, specrewrite; print("dev env ok: torch", torch.__version__, "torchaudio", torchaudio.__version__)'
touch "$STAMP"
