#!/usr/bin/env bash
# One idempotent setup step: creates .venv and installs the suite's stack.
#
#   bash scripts/setup_env.sh        (what `make setup` runs; `make demo` / `make test` call it first)
#
# Detectron2 is taken, in this order, from:
#   1. an already importable installation (e.g. a conda env built from environment.yml);
#   2. the upstream git repository, when reachable (compiled ops);
#   3. the PyPI redistribution sal-detectron2==0.7.2 as pure Python (no compiled ops: no rotated
#      boxes, no deformable conv, no fast C++ COCO evaluator; standard Faster/Mask R-CNN work).
# The choice is printed and stored in .venv/detectron2-source.txt (shown by `python -m transfer.doctor`).
#
# Environment knobs: VENV (default .venv), PYTHON (interpreter used to create it),
# TORCH_SPEC (default "torch==2.14.1 torchvision==0.29.1"; empty keeps the installed torch, e.g. a
# conda CUDA build: `VENV=$CONDA_PREFIX TORCH_SPEC= make setup`, or a stock CUDA image's system
# torch: `TORCH_SPEC= make setup` creates .venv with --system-site-packages from the python3 that
# imports torch, any Python >= 3.10 incl. 3.12), D2_GIT (upstream repository URL),
# PIP_FIND_LINKS / PIP_NO_INDEX (pip's own variables: install offline from a folder of wheels).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC-"torch==2.14.1 torchvision==0.29.1"}
D2_GIT=${D2_GIT:-https://github.com/facebookresearch/detectron2.git}
D2_PYPI=sal-detectron2==0.7.2

say() { echo "[setup] $*"; }

stamp_want=$( { cat scripts/setup_env.sh requirements.txt pyproject.toml; echo "$TORCH_SPEC"; } | sha256sum | cut -c1-16)
stamp_file=$VENV/.setup-stamp
if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp_want" ] \
   && "$VENV/bin/python" -c "import torch, torchvision, detectron2, transfer" 2>/dev/null; then
  say "environment up to date ($VENV; Detectron2: $(cat "$VENV/detectron2-source.txt" 2>/dev/null || echo unknown))"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  venv_flags=()
  if [ -z "$TORCH_SPEC" ]; then
    # Keep the machine's torch (stock CUDA images, clusters): the interpreter that imports it, and a venv that sees it.
    PY=${PYTHON:-}
    if [ -z "$PY" ]; then
      for cand in python3 python python3.13 python3.12 python3.11 python3.10; do
        if command -v "$cand" >/dev/null && "$cand" -c "import torch" 2>/dev/null; then PY=$(command -v "$cand"); break; fi
      done
    fi
    if [ -z "$PY" ]; then
      say "error: TORCH_SPEC is empty (keep the installed torch) but no python3 on PATH imports torch; set PYTHON=/path/to/python"
      exit 1
    fi
    venv_flags=(--system-site-packages)
    # A python inside a virtual environment (e.g. a CUDA image's /opt/torch/.venv) makes a venv whose
    # --system-site-packages is the *base* interpreter's, without that torch: link its site-packages too.
    parent_sites=$("$PY" -c 'import sys, sysconfig; p = sysconfig.get_paths()
if sys.prefix != sys.base_prefix: print("\n".join(dict.fromkeys([p["purelib"], p["platlib"]])))')
  else
    PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
  fi
  say "creating $VENV with $("$PY" --version 2>&1)${venv_flags[*]:+ (${venv_flags[*]})}"
  if ! "$PY" -m venv "${venv_flags[@]}" "$VENV" 2>/dev/null; then
    # No ensurepip (e.g. Debian's python3 without python3-venv): a venv without pip; a linked environment's pip serves.
    rm -rf "$VENV"
    "$PY" -m venv --without-pip "${venv_flags[@]}" "$VENV"
  fi
  if [ -n "${parent_sites:-}" ]; then
    say "linking the site-packages of $PY's environment ($(echo "$parent_sites" | head -1))"
    echo "$parent_sites" > "$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/_parent_env.pth"
  fi
fi
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
quiet() { "$@" 2>&1 | grep -v -E "is ignored: it is neither a file nor a directory" || true; return "${PIPESTATUS[0]}"; }

if [ -n "$TORCH_SPEC" ]; then
  say "installing $TORCH_SPEC"
  # shellcheck disable=SC2086
  quiet "${pip[@]}" install -q $TORCH_SPEC
else
  if ! torch_version=$("$VENV/bin/python" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)' 2>/dev/null); then
    say "error: TORCH_SPEC is empty but $VENV/bin/python cannot import torch (remove $VENV to recreate it with the system torch, or set TORCH_SPEC)"
    exit 1
  fi
  say "TORCH_SPEC empty: keeping the environment's torch ($torch_version)"
fi
requirements=requirements.txt
nodeps=()
if [ -z "$TORCH_SPEC" ]; then
  # Keep the environment's NumPy and OpenCV: its torch and compiled packages were built against them (the
  # numpy<2 / opencv-python<4.12 pins are for the pinned stack). lvis then goes in without its opencv-python.
  requirements=$VENV/requirements-env.txt
  mapfile -t nodeps < <("$VENV/bin/python" - requirements.txt "$requirements" <<'EOF'
import importlib.util, re, sys
src, dst = sys.argv[1], sys.argv[2]
has = {m: importlib.util.find_spec(m) is not None for m in ("numpy", "cv2")}
keep, nodeps = [], []
for line in open(src):
    name = re.match(r"\s*([A-Za-z0-9_.-]*)", line).group(1).lower()
    if (name == "numpy" and has["numpy"]) or (name == "opencv-python" and has["cv2"]):
        continue
    if name == "lvis" and has["cv2"]:
        nodeps.append(line.split("#")[0].strip())
        continue
    keep.append(line)
open(dst, "w").writelines(keep)
print("\n".join(nodeps))
EOF
)
  if np_version=$("$VENV/bin/python" -c 'import numpy; print(numpy.__version__)' 2>/dev/null); then
    say "keeping the environment's numpy $np_version"
  fi
fi
say "installing $requirements"
quiet "${pip[@]}" install -q -r "$requirements"
if [ ${#nodeps[@]} -gt 0 ] && [ -n "${nodeps[0]}" ]; then
  say "installing ${nodeps[*]} without dependencies (the environment's OpenCV serves it)"
  quiet "${pip[@]}" install -q --no-deps "${nodeps[@]}"
fi
say "installing the suite (editable)"
quiet "${pip[@]}" install -q --no-deps --no-build-isolation -e .

site=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
source_file=$VENV/detectron2-source.txt
d2_source=""
if d2_file=$("$VENV/bin/python" -c "import detectron2; print(detectron2.__file__)" 2>/dev/null); then
  case "$d2_file" in
    */detectron2-pypi/*) d2_source="PyPI $D2_PYPI (pure Python, no compiled ops)" ;;
    *) if [ -f "$source_file" ]; then d2_source=$(cat "$source_file"); else d2_source="already installed ($d2_file)"; fi ;;
  esac
elif command -v git >/dev/null && timeout 20 git ls-remote "$D2_GIT" HEAD >/dev/null 2>&1; then
  say "Detectron2: upstream repository reachable, building from $D2_GIT"
  if quiet "${pip[@]}" install -q --no-build-isolation "git+$D2_GIT"; then
    d2_source="upstream git ($D2_GIT)"
  else
    say "Detectron2: building from git failed; falling back to PyPI $D2_PYPI"
  fi
else
  say "Detectron2: upstream repository not reachable"
fi
if [ -z "$d2_source" ]; then
  target=$VENV/detectron2-pypi
  say "Detectron2: installing $D2_PYPI as pure Python into $target"
  quiet "${pip[@]}" install -q --upgrade --no-deps --target "$target" \
    --python-version 3.10 --only-binary=:all: "$D2_PYPI"
  # Its compiled _C is built for another Python; its top-level tools/ would shadow other packages.
  rm -rf "$target"/detectron2/_C*.so "$target/tools"
  realpath "$target" > "$site/detectron2-pypi.pth"
  d2_source="PyPI $D2_PYPI (pure Python, no compiled ops)"
fi
echo "$d2_source" > "$source_file"
"$VENV/bin/python" -c "import detectron2, torch; print('[setup] torch', torch.__version__, '| detectron2', detectron2.__version__)"
say "Detectron2 source: $d2_source"
echo "$stamp_want" > "$stamp_file"
say "done"
