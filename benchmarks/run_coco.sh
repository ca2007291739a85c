#!/usr/bin/env bash
# COCO Mask R-CNN transfer (MoCo paper Table 5; --arch ViTDet: ViTDet's recipe on a plain ViT). `bash benchmarks/run_coco.sh --help` for flags.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
py=${VENV:-$repo/.venv}/bin/python
[ -x "$py" ] || { echo "run_coco.sh: no environment yet; run 'make setup' first" >&2; exit 2; }
exec "$py" -m benchmarks.run coco "$@"
