"""The strategy grid (issue 7): every arm, the peers' fixed recipes and the recommended plan on
tasks x sizes x backbones x seeds; CSV, a Markdown section of docs/benchmarks.md and a plot.

The plan comes three ways: metadata mode scored in the harness (``recommended``), data mode scored
in the harness (``recommended-data``), and the metadata plan executed by ``zoo run`` itself, its saved
model reloaded and scored on the test split (``recommended-run``).

Usage::

    python bench/transfer_grid.py --quick          # small slice, <= 5 min on 2 cores (CI)
    python bench/transfer_grid.py                  # full grid, resumable: rows append to the CSV
    python bench/transfer_grid.py --report-only    # rebuild the table and plot from the CSV
    python bench/transfer_grid.py --shard 0/2 & python bench/transfer_grid.py --shard 1/2; wait   # both cores
    # then run the same two commands again: a shard that finished first chose its close cells (extra
    # seeds) before the other shard's rows were in; the second pass adds what it missed

The full grid appends one CSV row per (task, size, backbone, seed, arm) as soon as it is done and
skips rows already present, so rerunning the same command continues where it stopped. Cells whose
oracle and recommended accuracies differ by less than 2 points get two extra seeds (5 in all).
See ``bench/grid/`` for the tasks, arms, peers and report.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BACKBONES = {"image": ("timm:efficientnet_lite0.pypi_in1k", "timm:efficientnet_lite1.pypi_in1k", "timm:efficientnet_lite2.pypi_in1k"),
             "text": ("hf:sentence-transformers/all-MiniLM-L6-v2",)}
FIELDS = ["family", "per_class", "backbone", "seed", "modality", "n_train", "n_classes", "epochs", "arm", "kind", "acc", "seconds", "steps",
          "plan_strategy", "plan_unfreeze", "plan_backbone", "plan_epochs", "plan_head_lr", "mapped_arm", "rec_seconds",
          "train_loss", "diverged", "lr_scale", "best_epoch", "epochs_run", "val_acc"]
# (families, sizes, image backbones) blocks, run in this order; the full grid fits 2 h on 2 cores by
# giving Lite0 every family and size, and the larger Lite1/Lite2 the two anchor families at 20 per class
QUICK = {"blocks": [(["natural", "digits", "numpy-topics"], [5], BACKBONES["image"][:1])], "seeds": [0], "target_steps": 12}
FULL = {"blocks": [(["natural", "digits", "natural-shift", "position", "shapes", "numpy-topics", "sklearn-topics"], [5, 20, 100], BACKBONES["image"][:1]),
                   (["natural", "digits"], [20], BACKBONES["image"][1:])],
        "seeds": [0, 1, 2], "target_steps": 40}


def upgrade_header(csv_path: Path) -> None:
    """Give the CSV the current :data:`FIELDS` header (a new file: the header alone; an older file: its rows
    rewritten under the new header, columns it lacks left empty), written to a temporary file and moved into place."""
    if csv_path.exists():
        with csv_path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames == FIELDS:
                return
            rows = list(reader)
        missing = [f for f in (reader.fieldnames or []) if f not in FIELDS]
        if missing:
            raise SystemExit(f"{csv_path}: columns {missing} are not in this version's grid; move the file away to start a new one")
    else:
        rows = []
    tmp = csv_path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, FIELDS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, csv_path)


def _key(r: dict) -> tuple:
    return (r["family"], int(r["per_class"]), r["backbone"], int(r["seed"]), r["arm"])


def _mine(shard: tuple[int, int], *key: object) -> bool:
    return zlib.crc32(repr(key).encode()) % shard[1] == shard[0]


def run(families: list[str], sizes: list[int], seeds: list[int], image_backbones: tuple[str, ...], target_steps: int, csv_path: Path,
        log: bool = True, shard: tuple[int, int] = (0, 1)) -> None:
    """Run every missing row of the grid (of this shard's cells), appending to ``csv_path``.

    Rows are appended one ``write`` each to a file opened for appending, so two shards can share the CSV.
    """
    import torch

    import zoo
    from bench.grid import arms as A
    from bench.grid.cell import run_cell
    from bench.grid.peers import ARMS, PEERS, RECOMMENDATIONS
    from bench.grid.report import read_rows
    from bench.grid.tasks import TEXT_FAMILIES, build_task

    rows = read_rows(csv_path)
    done = {_key(r) for r in rows}
    wanted = set(ARMS) | set(PEERS) | set(RECOMMENDATIONS)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    upgrade_header(csv_path)
    with csv_path.open("a", newline="") as fh:
        w = csv.DictWriter(fh, FIELDS, extrasaction="ignore")

        def emit(row: dict) -> None:
            w.writerow(row)
            fh.flush()
            if log:
                print(f"  {row['family']}@{row['per_class']} {row['backbone'].split(':')[-1]} s{row['seed']} {row['arm']:<12} acc={float(row['acc']):.3f} {float(row['seconds']):6.1f}s", flush=True)

        order = [b for b in image_backbones] + list(BACKBONES["text"])
        for bb_id in order:
            modality = "text" if bb_id in BACKBONES["text"] else "image"
            fams = [f for f in families if (f in TEXT_FAMILIES) == (modality == "text")]
            todo = [(f, s, sd) for s in sizes for f in fams for sd in seeds if _mine(shard, f, s, bb_id, sd)
                    and not wanted <= {a for (ff, pp, bb, ss, a) in done if (ff, pp, bb, ss) == (f, s, bb_id, sd)}]
            if not todo:
                continue
            bb = zoo.load(bb_id)
            split = A.Split(bb)
            state = A.snapshot(split)
            for fam, size, seed in todo:
                skip = {a for (ff, pp, b, ss, a) in done if (ff, pp, b, ss) == (fam, size, bb_id, seed)}
                known = {r["arm"]: float(r["acc"]) for r in rows if _key(r)[:4] == (fam, size, bb_id, seed)}
                t0 = time.perf_counter()
                task = build_task(fam, size, seed)
                run_cell(split, state, task, bb_id, target_steps=target_steps, skip=skip, emit=emit, known=known)
                if log:
                    print(f"cell {fam}@{size} {bb_id} seed {seed}: {time.perf_counter() - t0:.0f}s", flush=True)
            del bb, split, state
            torch.cuda.empty_cache() if torch.cuda.is_available() else None


def close_cells(csv_path: Path, margin: float = 2.0) -> list[tuple[str, int, str]]:
    """Cells whose regret is non-zero but under ``margin`` points: not resolved by 3 seeds, so they get 5.

    A regret of exactly 0 means the plan maps onto the oracle arm itself (the same run); nothing to resolve.
    """
    from bench.grid.report import cells, read_rows

    return [(c["task"], c["size"], c["backbone"]) for c in cells(read_rows(csv_path)) if 0 < abs(c["regret"]) < margin]


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a small slice (<= 5 min on 2 cores)")
    p.add_argument("--csv", type=Path, default=None, help="results CSV (default bench/results/transfer_grid[_quick].csv)")
    p.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks.md")
    p.add_argument("--no-doc", action="store_true", help="do not touch docs/benchmarks.md")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--families", nargs="*")
    p.add_argument("--sizes", nargs="*", type=int)
    p.add_argument("--seeds", nargs="*", type=int)
    p.add_argument("--backbones", nargs="*", help="image backbones (default: EfficientNet-Lite0/1/2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: the fastest on a shared 2-core machine)")
    p.add_argument("--no-extra-seeds", action="store_true", help="skip seeds 3-4 for close cells")
    p.add_argument("--shard", default="0/1", help="I/K: run only the I-th of K disjoint parts of the grid (run K processes, one per core)")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    cfg = dict(QUICK if a.quick else FULL)
    if a.seeds:
        cfg["seeds"] = a.seeds
    if a.families or a.sizes or a.backbones:
        fams, sizes, bbs = cfg["blocks"][0]
        cfg["blocks"] = [(a.families or fams, a.sizes or sizes, tuple(a.backbones) if a.backbones else bbs)]
    csv_path = a.csv or ROOT / "bench" / "results" / ("transfer_grid_quick.csv" if a.quick else "transfer_grid.csv")
    t0 = time.perf_counter()
    if not a.report_only:
        shard = tuple(int(v) for v in a.shard.split("/"))
        for fams, sizes, bbs in cfg["blocks"]:
            run(fams, sizes, cfg["seeds"], bbs, cfg["target_steps"], csv_path, shard=shard)
        if not a.quick and not a.no_extra_seeds:
            for fam, size, bb in close_cells(csv_path):
                run([fam], [size], [3, 4], (bb,) if bb not in BACKBONES["text"] else (), cfg["target_steps"], csv_path, shard=shard)
    from bench.grid import report

    rows = report.read_rows(csv_path)
    png = csv_path.with_suffix(".png")
    report.plot(rows, png)
    planned = sum(len(_families_for(fams, bbs)) * len(sizes) * len(cfg["seeds"]) for fams, sizes, bbs in cfg["blocks"])
    section = report.markdown(rows, quick=a.quick, seconds=None if a.report_only else time.perf_counter() - t0,
                              plot=os.path.relpath(png, a.doc.parent) if png.exists() else None, planned=planned,
                              cpu_seconds=time.process_time())
    if not a.no_doc and not a.quick:  # the quick slice (CI) never rewrites the full grid's section
        report.write_doc(a.doc, section)
    print(section)
    done = report._done_seeds(rows)
    if a.quick and done < planned:  # CI: the slice must run end to end
        print(f"transfer_grid --quick: only {done} of {planned} (cell, seed) pairs completed", file=sys.stderr)
        return 1
    return 0


def _families_for(families: list[str], image_backbones: tuple[str, ...]) -> list[tuple[str, str]]:
    """(family, backbone) pairs a block runs: image families on each image backbone, text ones on the text encoder."""
    from bench.grid.tasks import TEXT_FAMILIES

    return [(f, b) for f in families for b in (BACKBONES["text"] if f in TEXT_FAMILIES else image_backbones)]


if __name__ == "__main__":
    raise SystemExit(main())
