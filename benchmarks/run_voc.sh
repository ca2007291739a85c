#!/usr/bin/env bash
# PASCAL VOC detection transfer (MoCo paper Table 2). `bash benchmarks/run_voc.sh --help` for flags.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
py=${VENV:-$repo/.venv}/bin/python
[ -x "$py" ] || { echo "run_voc.sh: no environment yet; run 'make setup' first" >&2; exit 2; }
exec "$py" -m benchmarks.run voc "$@"
