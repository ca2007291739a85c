#!/usr/bin/env bash
# Detection transfer on your own COCO-json or VOC-layout data. `bash benchmarks/run_custom.sh --help` for flags.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
py=${VENV:-$repo/.venv}/bin/python
[ -x "$py" ] || { echo "run_custom.sh: no environment yet; run 'make setup' first" >&2; exit 2; }
exec "$py" -m benchmarks.run custom "$@"
