#!/usr/bin/env bash
# Cityscapes instance / semantic segmentation transfer (MoCo paper Table 6). `bash benchmarks/run_cityscapes.sh --help` for flags.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
py=${VENV:-$repo/.venv}/bin/python
[ -x "$py" ] || { echo "run_cityscapes.sh: no environment yet; run 'make setup' first" >&2; exit 2; }
exec "$py" -m benchmarks.run cityscapes "$@"
