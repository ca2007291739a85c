#!/usr/bin/env bash
# The MoCo papers' ablations (Figure 3, Table 3, momentum, MoCo v2 Table 1) from sweep specs in
# benchmarks/sweeps/. `bash benchmarks/run_ablation.sh --help` for flags; `--tiny` for the CPU sweep.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
py=${VENV:-$repo/.venv}/bin/python
[ -x "$py" ] || { echo "run_ablation.sh: no environment yet; run 'make setup' first" >&2; exit 2; }
exec "$py" -m benchmarks.ablation "$@"
