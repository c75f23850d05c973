"""`import zoo` and the lookup commands load no ML framework (checked in fresh interpreters)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "torchvision", "tensorflow", "keras", "tf_keras", "transformers", "timm", "tensorflow_hub", "PIL")

PROBE = """
import io, sys, contextlib, json
argv = json.loads(sys.argv[1])
if argv is not None:
    from zoo.cli import main
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            main(argv)
        except SystemExit:
            pass
else:
    import zoo
print(json.dumps(sorted(m for m in {heavy} if m in sys.modules)))
"""


@pytest.mark.parametrize(
    "argv",
    [
        None,
        ["--help"],
        ["list"],
        ["list", "--json"],
        ["list", "--modality", "text", "--family", "bert"],
        ["search", "resnet"],
        ["info", "torchvision:resnet50.IMAGENET1K_V2"],
        ["info", "timm:efficientnet_lite0.pypi_in1k", "--json"],
        ["plugins"],
        ["recommend", "--samples", "800", "--classes", "10", "--domain", "documents"],
    ],
    ids=lambda a: "import zoo" if a is None else "zoo " + " ".join(a),
)
def test_no_framework_loaded(argv):
    code = PROBE.replace("{heavy}", repr(HEAVY))
    out = subprocess.run([sys.executable, "-c", code, json.dumps(argv)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == [], f"{argv} imported {loaded}"


def test_lazy_public_surface():
    out = subprocess.run(
        [sys.executable, "-c", "import sys, zoo; print('zoo._api' in sys.modules, 'pydantic' in sys.modules); zoo.parse_id; print('zoo._ids' in sys.modules)"],
        capture_output=True,
        text=True,
    )
    assert out.stdout.split() == ["False", "False", "True"]


def test_unknown_attribute():
    import zoo

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        zoo.nope  # noqa: B018
    assert "load" in dir(zoo)
