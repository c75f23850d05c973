"""zoo._io: atomic writes, and what writers that were killed midway leave behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from zoo import _io


def _killed_writer(folder: Path, code: str) -> int:
    """Run ``code`` (with ``folder`` as ``F``) in a child that SIGKILLs itself at its end, as a Ctrl-\\ or the OOM killer would."""
    prog = "import os, signal\nfrom pathlib import Path\nfrom zoo import _io\nF = Path(os.environ['F'])\n" + textwrap.dedent(code) + "\nos.kill(os.getpid(), signal.SIGKILL)\n"
    proc = subprocess.run([sys.executable, "-c", prog], env={**os.environ, "F": str(folder)}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    return proc.returncode


def test_a_write_killed_midway_leaves_a_temp_that_the_next_write_removes(tmp_path: Path) -> None:
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    target = tmp_path / "model.onnx"
    target.write_text("old")
    # killed inside the write: the half-written temp stays, the target keeps its old content
    _killed_writer(tmp_path, "_io.atomic_write(F / 'model.onnx', lambda tmp: (tmp.write_text('half'), os.kill(os.getpid(), signal.SIGKILL)))")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert len(left) == 2 and left[0].startswith(".model.onnx.") and left[0].endswith(".tmp") and target.read_text() == "old"
    # another writer's, still running (this process), another host's, and another file's temps are not touched
    mine = _io.owned_temp(tmp_path, "model.onnx", ".tmp")
    other_host = tmp_path / ".model.onnx.elsewhere-1.abcdefgh.tmp"
    other_file = _io.owned_temp(tmp_path, "report.md", ".tmp")
    other_host.write_text("x")
    _io.atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, other_host.name, other_file.name, "model.onnx"])


def test_a_killed_folder_writer_is_removed_too(tmp_path: Path) -> None:
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    _killed_writer(tmp_path, "d = _io.owned_temp(F, 'savedmodel', '', directory=True); (d / 'variables').mkdir(); (d / 'variables' / 'v.data').write_bytes(b'0' * 100)")
    (left,) = list(tmp_path.iterdir())
    assert left.is_dir() and left.name.startswith(".savedmodel.")
    fresh = _io.owned_temp(tmp_path, "savedmodel", "", directory=True)
    assert [p.name for p in tmp_path.iterdir()] == [fresh.name]


def test_remove_stale_temps_takes_both_names(tmp_path: Path) -> None:
    """Callers that hold the writers' lock remove every temp, the owned names and the plain mkstemp ones of older zoos."""
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    (tmp_path / ".manifest.json.abcd1234.tmp").write_text("old zoo")
    (tmp_path / f".manifest.json.{_io._host()}-{os.getpid()}.abcd1234.tmp").write_text("this zoo")
    (tmp_path / ".manifest.json.not-a-temp").write_text("kept")
    _io.remove_stale_temps(tmp_path, ".manifest.json.", ".tmp")
    assert [p.name for p in tmp_path.iterdir()] == [".manifest.json.not-a-temp"]


def test_alive() -> None:
    assert _io._alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not _io._alive(child.pid) and not _io._alive(2**40)


def test_a_folder_that_cannot_be_written_is_named_with_the_file_being_written(tmp_path: Path, monkeypatch) -> None:
    """`zoo export` into a read-only run folder said "Permission denied: RUN/model/.model.torchscript.pt.<host>-<pid>.<random>.tmp",
    a hidden name the user never sees, instead of the file it was writing."""
    import errno
    import tempfile

    import pytest

    from zoo import cli

    def denied(dir, prefix, suffix):  # what mkstemp / mkdtemp raise in a folder without write permission (root is never refused)
        raise PermissionError(errno.EACCES, "Permission denied", os.path.join(dir, f"{prefix}k2j4h5g6{suffix}"))

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    monkeypatch.setattr(tempfile, "mkdtemp", denied)
    target = tmp_path / "model" / "model.torchscript.pt"
    with pytest.raises(PermissionError) as exc:
        _io.atomic_write_text(target, "x")
    assert exc.value.filename == str(target) and exc.value.errno == errno.EACCES
    assert cli._os_error(exc.value) == f"Permission denied: {target}; check the path and its permissions."
    with pytest.raises(PermissionError) as exc:
        _io.owned_temp(tmp_path, "savedmodel", "", directory=True)
    assert exc.value.filename == str(tmp_path / "savedmodel")
