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
	@$(PY) -m pytest -n 2 --dist loadgroup -q

doctor: setup
	@$(PY) -m transfer.doctor

# GPU machines only (about 10 minutes, no dataset): environment, GPU tests, speed figures -> docs/gpu-check/
# (GPU_CHECK_ARGS="--budget 300 --out DIR" to change the time budget or the report folder)
gpu-check: setup
	@$(PY) -m benchmarks.gpu_check $(GPU_CHECK_ARGS)

clean:
	rm -rf output .pytest_cache
