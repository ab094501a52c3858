# Two commands for a fresh machine with Python >= 3.10 (3.11 preferred):
#   make demo   rewrite + export a small audio classifier, run it in ONNX Runtime, print the report
#   make test   set up .venv (if missing) and run the test suite (all but the third-party model sweeps, ~20 min)
# CI also runs `make test-slow`: the sweeps of 23 more third-party models and the public models on device.
PY := .venv/bin/python

.PHONY: demo test test-slow test-realmodels bench venv

venv:
	bash scripts/setup_dev.sh

demo: venv
	$(PY) -m specrewrite.demo

test: venv
	bash scripts/install_realmodels.sh
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not slow"

test-slow: venv
	bash scripts/install_realmodels.sh
	$(PY) -m pytest -q -n 2 --dist loadfile -m slow

test-realmodels: venv
	bash scripts/install_realmodels.sh
	$(PY) -m pytest -q -m realmodel

bench: venv
	$(PY) benchmarks/run.py
