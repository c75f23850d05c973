"""The root conftest.py: what it does to the whole suite."""

from __future__ import annotations

import os
from pathlib import Path


def test_a_skipped_test_fails_under_ci(tmp_path):
    """CI installs every framework, so the root conftest turns a skip into a failure when ``CI=true``: a skip there
    (torchvision or TensorFlow missing) would hide a broken source. Outside CI a skip stays a skip."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "test_one.py").write_text("import pytest\n\n\ndef test_it():\n    pytest.skip('no such framework')\n")
    env = {**os.environ, "PYTHONPATH": str(root)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider", "-p", "no:xdist", str(tmp_path / "test_one.py")]
    ci = subprocess.run(cmd, cwd=tmp_path, env={**env, "CI": "true"}, capture_output=True, text=True)
    assert ci.returncode == 1 and "skipped under CI (Skipped: no such framework)" in ci.stdout, ci.stdout
    env.pop("CI", None)
    local = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert local.returncode == 0 and "1 skipped" in local.stdout, local.stdout
