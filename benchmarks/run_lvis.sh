#!/usr/bin/env bash
# LVIS v0.5 instance segmentation transfer (MoCo paper Table 6). `bash benchmarks/run_lvis.sh --help` for flags.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
py=${VENV:-$repo/.venv}/bin/python
[ -x "$py" ] || { echo "run_lvis.sh: no environment yet; run 'make setup' first" >&2; exit 2; }
exec "$py" -m benchmarks.run lvis "$@"
