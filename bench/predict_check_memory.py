"""Peak RSS of zoo predict's up-front image check: one image at a time (zoo now) against the whole list (zoo before).

    .venv/bin/python bench/predict_check_memory.py PHOTO [PHOTO ...]   # e.g. a few 2000x1500 JPEGs

Each way runs in its own process over the same paths (the list repeated to 40 items) and reports its peak RSS.
"""

from __future__ import annotations

import resource
import subprocess
import sys


def child(how: str, paths: list[str]) -> None:
    import zoo.inputs as I

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if how == "list":
        I.load_images(paths)  # what cmd_predict did
    else:
        I.check_images(paths)
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)


if __name__ == "__main__":
    if sys.argv[1] in ("list", "check"):
        child(sys.argv[1], sys.argv[2:])
        sys.exit(0)
    paths = (sys.argv[1:] * 40)[:40]
    got = {}
    for how in ("list", "check"):
        out = subprocess.run([sys.executable, __file__, how, *paths], capture_output=True, text=True, check=True).stdout
        got[how] = float(out.split()[-1])
    print(f"{len(paths)} images: whole list +{got['list']:.0f} MB peak RSS, one at a time +{got['check']:.0f} MB: {got['list'] / max(got['check'], 1):.0f}x less")
