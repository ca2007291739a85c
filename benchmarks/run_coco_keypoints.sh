#!/usr/bin/env bash
# COCO keypoint detection transfer (MoCo paper Table 6). `bash benchmarks/run_coco_keypoints.sh --help` for flags.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
py=${VENV:-$repo/.venv}/bin/python
[ -x "$py" ] || { echo "run_coco_keypoints.sh: no environment yet; run 'make setup' first" >&2; exit 2; }
exec "$py" -m benchmarks.run coco_keypoints "$@"
