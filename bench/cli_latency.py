"""Wall time of zoo's lookup commands next to the peers' own listing calls, in one run.

Prints medians over --runs runs (default 7) and the ratio peer / zoo. Targets (issue 2): each zoo
lookup at most 0.3 s median and at least 10x faster than `import timm; timm.list_models('*')`.

    python bench/cli_latency.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

PY = sys.executable
ZOO = [PY, "-m", "zoo"]

COMMANDS = {
    "zoo list": ZOO + ["list"],
    "zoo list --json": ZOO + ["list", "--json"],
    "zoo info torchvision:resnet50.IMAGENET1K_V2": ZOO + ["info", "torchvision:resnet50.IMAGENET1K_V2"],
    "zoo search efficientnet": ZOO + ["search", "efficientnet"],
    "zoo list --modality text --family bert": ZOO + ["list", "--modality", "text", "--family", "bert"],
    "zoo recommend (metadata mode)": ZOO + ["recommend", "--samples", "800", "--classes", "10"],
}
PEERS = {
    "timm.list_models('*')": [PY, "-c", "import timm; timm.list_models('*')"],
    "torchvision list_models()": [PY, "-c", "import torchvision.models as m; m.list_models()"],
}


def median_time(cmd: list[str], runs: int) -> float:
    times = []
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="0")
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)  # warm the page cache
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.decode()[-500:]}")
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    peers = {name: median_time(cmd, args.runs) for name, cmd in PEERS.items()}
    timm_t = peers["timm.list_models('*')"]
    print(f"median wall time over {args.runs} runs (python {sys.version.split()[0]}, {os.cpu_count()} cpus)")
    print(f"{'command':48s} {'median s':>9s} {'timm/zoo':>9s} {'target':>22s}")
    for name, t in peers.items():
        print(f"{name:48s} {t:9.3f} {'':>9s}")
    ok = True
    for name, cmd in COMMANDS.items():
        try:
            t = median_time(cmd, args.runs)
        except SystemExit as exc:
            print(f"{name:48s} {'n/a':>9s}  ({str(exc)[-80:]})")
            continue
        ratio = timm_t / t
        good = t <= 0.3 and ratio >= 10
        ok &= good
        print(f"{name:48s} {t:9.3f} {ratio:8.1f}x {'<=0.3s & >=10x: ' + ('met' if good else 'MISSED'):>22s}")
    print("all targets met" if ok else "some targets missed")


if __name__ == "__main__":
    main()
