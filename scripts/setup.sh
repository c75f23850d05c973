#!/usr/bin/env bash
# Create .venv (if needed) and install zoo, every source plugin and the test tools into it.
# Idempotent: a second run only checks. Used by scripts/demo.sh and scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
stamp=.venv/.zoo-installed
want=$(cat pyproject.toml plugins/*/pyproject.toml scripts/setup.sh scripts/constraints.txt | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "zoo: installing into .venv (torch, tensorflow, transformers, timm: several minutes the first time)" >&2
# The installed environment takes about 9 GB (torch's CUDA build is all PyPI serves for x86_64
# Linux); pip's wheel cache would hold another copy of the downloads, so it is off unless the
# caller turned it on.
export PIP_NO_CACHE_DIR=${PIP_NO_CACHE_DIR:-1}
need_gb=10
free_gb() { df -Pk .venv | awk 'NR == 2 { printf "%d", $4 / 1048576 }'; }
if [ "$(free_gb)" -lt "$need_gb" ]; then
  echo "zoo: warning: $(free_gb) GB free for .venv in $PWD; the install needs about $need_gb GB" >&2
fi
explain() {
  if [ "$(free_gb)" -lt "$need_gb" ]; then
    echo "zoo: setup failed with $(free_gb) GB left for .venv in $PWD (it needs about $need_gb GB):" \
      "free disk space, then run scripts/setup.sh again" >&2
  else
    echo "zoo: setup failed: see pip's message above, then run scripts/setup.sh again" >&2
  fi
}
trap 'explain' ERR
"$VPY" -m pip install -q --upgrade pip
# tensorflow_hub 0.16 imports pkg_resources, which setuptools 81 removed
"$VPY" -m pip install -q -c scripts/constraints.txt 'setuptools<81' wheel
# the newest torch/torchvision this build machine serves; pinned so CI and developers agree
"$VPY" -m pip install -q -c scripts/constraints.txt torch==2.14.1 torchvision==0.29.1
plugins=()
for p in plugins/*/; do plugins+=(-e "$p"); done
# scripts/constraints.txt pins what the suite was last run with (regenerate: pip freeze --exclude-editable)
"$VPY" -m pip install -q -c scripts/constraints.txt -e '.[all,demo,test]' "${plugins[@]}"
echo "$want" > "$stamp"
