#!/usr/bin/env bash
# COCO dense pose estimation (needs Detectron2's DensePose project) transfer (MoCo paper Table 6). `bash benchmarks/run_densepose.sh --help` for flags.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
py=${VENV:-$repo/.venv}/bin/python
[ -x "$py" ] || { echo "run_densepose.sh: no environment yet; run 'make setup' first" >&2; exit 2; }
exec "$py" -m benchmarks.run densepose "$@"
