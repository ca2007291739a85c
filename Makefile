# The README's two commands are `make demo` and `make test`; both run the setup first.
VENV ?= .venv
export VENV
PY := $(VENV)/bin/python
export PYTHONWARNINGS ?= ignore::UserWarning:detectron2.model_zoo.model_zoo

.PHONY: setup demo test doctor gpu-check clean

setup:
	@bash scripts/setup_env.sh

demo: setup
	@bash benchmarks/run_voc.sh --tiny

test: setup
	@$(PY) -m pytest -n 2 --dist loadfile -q

doctor: setup
	@$(PY) -m transfer.doctor

# GPU machines only (about 10 minutes, no dataset): environment, GPU tests, speed figures -> docs/gpu-check/
gpu-check: setup
	@$(PY) -m benchmarks.gpu_check

clean:
	rm -rf output .pytest_cache
