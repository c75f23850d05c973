"""zoo's downloader and Hugging Face's, against a loopback HTTP server that serves files like the hubs.

After every failure (cut-off transfer, wrong hash, 404, 5xx) the destination holds the whole
verified file or nothing; four processes pulling one file leave one valid file and all succeed.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest

from zoo.cache import records
from zoo.cache.download import fetch, hash_prefix_of
from zoo.cache.errors import DownloadError, IntegrityError
from zoo.errors import NotCachedError
from zoo.testing import HUB_COMMIT as COMMIT
from zoo.testing import LoopbackHub as Hub
from zoo.testing import git_blob_sha1

PAYLOAD = os.urandom(300_000) + b"zoo weights"
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def hub() -> Hub:
    with Hub() as h:
        yield h


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def ckpt_dir(zoo_home: Path) -> Path:
    return Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints"


NAME = f"/models/resnet18-{SHA[:8]}.pth"  # torch.hub style: the name publishes a sha256 prefix


def test_whole_file_verified_against_the_published_prefix_and_recorded(hub: Hub, ckpt_dir: Path) -> None:
    hub.files[NAME] = PAYLOAD
    dest = ckpt_dir / Path(NAME).name
    assert hash_prefix_of(NAME) == SHA[:8]
    fetch(hub.url + NAME, dest, sha256_prefix=hash_prefix_of(NAME), model_id="torchvision:resnet18", progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert _leftovers(ckpt_dir) == [dest.name]
    rec = records.files()[f"TORCH_HOME/hub/checkpoints/{dest.name}"]
    assert rec["sha256"] == SHA and rec["size"] == len(PAYLOAD) and rec["models"] == ["torchvision:resnet18"]
    # readable by every user of a shared cache, like bundle imports (mkstemp made both private: 0600)
    assert dest.stat().st_mode & 0o777 == 0o644 and records.manifest_path().stat().st_mode & 0o777 == 0o644
    fetch(hub.url + NAME, dest, sha256_prefix=SHA[:8], progress=False)  # cached and valid: no second GET
    assert hub.gets[NAME] == 1


def test_transfer_cut_off_leaves_nothing_then_retry_gets_whole_file(hub: Hub, ckpt_dir: Path) -> None:
    hub.files[NAME] = PAYLOAD
    hub.plan[NAME] = ["cut"]
    dest = ckpt_dir / Path(NAME).name
    with pytest.raises(DownloadError, match="cut off"):
        fetch(hub.url + NAME, dest, sha256=SHA, retries=1, backoff=0.01, progress=False)
    assert hub.gets[NAME] == 2 and _leftovers(ckpt_dir) == []
    hub.plan[NAME] = ["cut", "ok"]
    fetch(hub.url + NAME, dest, sha256=SHA, retries=2, backoff=0.01, progress=False)
    assert dest.read_bytes() == PAYLOAD and _leftovers(ckpt_dir) == [dest.name]


def test_wrong_hash_is_refused_and_nothing_is_kept(hub: Hub, ckpt_dir: Path) -> None:
    bad = f"/models/resnet18-{'0' * 8}.pth"
    hub.files[bad] = PAYLOAD  # the name publishes a prefix the bytes do not have
    dest = ckpt_dir / Path(bad).name
    with pytest.raises(IntegrityError, match="nothing was written") as err:
        fetch(hub.url + bad, dest, sha256_prefix=hash_prefix_of(bad), progress=False)
    assert SHA in str(err.value)
    hub.files[NAME] = PAYLOAD
    with pytest.raises(IntegrityError):
        fetch(hub.url + NAME, ckpt_dir / "x.pth", sha256="f" * 64, progress=False)  # a lock's full hash
    with pytest.raises(IntegrityError, match="bytes"):
        fetch(hub.url + NAME, ckpt_dir / "y.pth", size=len(PAYLOAD) + 1, progress=False)
    assert _leftovers(ckpt_dir) == [] and records.files() == {}


def test_404_is_one_clear_line_and_not_retried(hub: Hub, ckpt_dir: Path) -> None:
    dest = ckpt_dir / "missing-abcdef12.pth"
    with pytest.raises(DownloadError) as err:
        fetch(hub.url + "/models/missing-abcdef12.pth", dest, progress=False)
    msg = str(err.value)
    assert "HTTP 404" in msg and str(dest) in msg and "\n" not in msg
    assert _leftovers(ckpt_dir) == []


def test_5xx_then_success(hub: Hub, ckpt_dir: Path) -> None:
    hub.files[NAME] = PAYLOAD
    hub.plan[NAME] = [503, 500, "ok"]
    dest = ckpt_dir / Path(NAME).name
    fetch(hub.url + NAME, dest, sha256_prefix=SHA[:8], retries=3, backoff=0.01, progress=False)
    assert hub.gets[NAME] == 3 and dest.read_bytes() == PAYLOAD and _leftovers(ckpt_dir) == [dest.name]
    hub.plan["/models/down.pth"] = [503]
    hub.files["/models/down.pth"] = PAYLOAD
    with pytest.raises(DownloadError, match="HTTP 503.*3 attempt"):
        fetch(hub.url + "/models/down.pth", ckpt_dir / "down.pth", retries=2, backoff=0.01, progress=False)
    assert _leftovers(ckpt_dir) == [dest.name]


def test_offline_opens_no_socket(hub: Hub, ckpt_dir: Path, no_network: None) -> None:
    hub.files[NAME] = PAYLOAD
    with pytest.raises(NotCachedError, match="torchvision:resnet18"):
        fetch(hub.url + NAME, ckpt_dir / Path(NAME).name, model_id="torchvision:resnet18", progress=False)
    assert hub.gets == {}


def test_four_processes_pulling_one_file(hub: Hub, ckpt_dir: Path) -> None:
    hub.files[NAME] = PAYLOAD
    hub.plan[NAME] = ["slow"]
    dest = ckpt_dir / Path(NAME).name
    code = (
        "import sys; from zoo.cache.download import fetch\n"
        "fetch(sys.argv[1], sys.argv[2], sha256=sys.argv[3], model_id='torchvision:resnet18', progress=False)\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, hub.url + NAME, str(dest), SHA], env=os.environ.copy(), stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    results = [(p.wait(timeout=60), p.stderr.read().decode()) for p in procs]
    assert all(rc == 0 for rc, _ in results), results
    assert dest.read_bytes() == PAYLOAD
    assert _leftovers(ckpt_dir) == [dest.name]
    assert hub.gets[NAME] == 1  # the lock let one process download; the others found the verified file
    assert records.files()[f"TORCH_HOME/hub/checkpoints/{dest.name}"]["sha256"] == SHA


# ---- Hugging Face: huggingface_hub's own download, HF_ENDPOINT pointed at the loopback hub -------
REPO = "zoo-test/tiny"


def _hf_cached(filename: str) -> object:
    from huggingface_hub import try_to_load_from_cache

    return try_to_load_from_cache(REPO, filename, cache_dir=str(Path(os.environ["HF_HOME"]) / "hub"))


def _hf_get(hub: Hub, filename: str) -> str:
    from huggingface_hub import hf_hub_download

    return hf_hub_download(REPO, filename, cache_dir=str(Path(os.environ["HF_HOME"]) / "hub"), endpoint=hub.url, etag_timeout=5)


def test_hf_download_404_cut_off_and_resume(hub: Hub, zoo_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub.errors import EntryNotFoundError

    from huggingface_hub import constants as hf_constants

    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)  # read at import, maybe by an earlier offline test
    monkeypatch.setattr("huggingface_hub.file_download.time.sleep", lambda s: None, raising=False)
    with pytest.raises(EntryNotFoundError):
        _hf_get(hub, "nothing.safetensors")
    assert _hf_cached("nothing.safetensors") is None

    path = f"/{REPO}/resolve/main/model.safetensors"
    hub.files[path] = PAYLOAD
    hub.plan[path] = ["cut"]
    with pytest.raises(Exception):  # noqa: B017 - huggingface_hub's consistency/transfer error
        _hf_get(hub, "model.safetensors")
    assert hub.gets[path] >= 1  # the transfer was really attempted and cut
    assert _hf_cached("model.safetensors") is None  # no usable file: nothing in snapshots/
    snap = Path(os.environ["HF_HOME"]) / "hub" / f"models--{REPO.replace('/', '--')}" / "snapshots"
    assert not any(p.is_file() for p in snap.rglob("*")) if snap.exists() else True

    hub.plan[path] = ["cut", "ok"]
    got = _hf_get(hub, "model.safetensors")
    assert Path(got).read_bytes() == PAYLOAD and COMMIT in got
    assert _hf_cached("model.safetensors") == got


# ---- `zoo pull --lock` and `zoo cache verify --repair` fetch from the lock's URLs ----------------
def test_pull_lock_fetches_verifies_and_repair_refetches(hub: Hub, zoo_home: Path, tmp_path: Path, capsys) -> None:
    from zoo import cli
    from zoo.cache.lockfile import LockedFile, LockedModel, LockFile

    hub.files["/w/a.safetensors"] = PAYLOAD
    key = "ZOO_HOME/models/demo/a.safetensors"
    lock = LockFile(models=[LockedModel(id="demo:a", source="demo", revision="v1", files=[
        LockedFile(key=key, sha256=SHA, size=len(PAYLOAD), url=hub.url + "/w/a.safetensors")])])
    lock.write(tmp_path / "zoo.lock")
    assert cli.main(["pull", "--lock", str(tmp_path / "zoo.lock")]) == 0
    dest = records.path_of(key)
    assert dest.read_bytes() == PAYLOAD and "demo:a@v1: 1 file(s) verified" in capsys.readouterr().out
    # the server now serves other bytes: a lock keeps them out
    hub.files["/w/a.safetensors"] = PAYLOAD[::-1]
    dest.unlink()
    assert cli.main(["pull", "--lock", str(tmp_path / "zoo.lock")]) == 2
    assert "expected sha256 " + SHA in capsys.readouterr().err and not dest.exists()
    # a damaged file is re-fetched by --repair from the recorded URL and checked against the record
    hub.files["/w/a.safetensors"] = PAYLOAD
    assert cli.main(["pull", "--lock", str(tmp_path / "zoo.lock")]) == 0
    dest.write_bytes(PAYLOAD[:-1])
    capsys.readouterr()
    assert cli.main(["cache", "verify", "--repair"]) == 0
    out = capsys.readouterr().out
    assert str(dest) in out and "truncated" in out and "re-fetched" in out
    assert dest.read_bytes() == PAYLOAD


def test_hf_blobs_are_held_to_the_published_hash_lfs_and_git(hub: Hub, zoo_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A byte altered in transit (right length, right headers) is caught for LFS (sha256) and regular (git sha1) files."""
    from huggingface_hub import snapshot_download

    from zoo.cache.hub_blobs import check_snapshot, published_digest

    src = tmp_path / "repo"
    src.mkdir()
    (src / "model.safetensors").write_bytes(PAYLOAD)
    (src / "vocab.txt").write_text("[PAD]\n[UNK]\nzoo\n" * 50)
    files = hub.add_hf_repo("zoo-test/blobs", src)
    hub.point_hf_here(monkeypatch)
    hub.plan["zoo-test/blobs/model.safetensors"] = ["flip", "ok"]
    hub.plan["zoo-test/blobs/vocab.txt"] = ["flip", "ok"]
    cache = Path(os.environ["HF_HOME"]) / "hub"
    folder = Path(snapshot_download("zoo-test/blobs", cache_dir=cache))
    kinds = {p.name: published_digest(p)[0] for p in folder.iterdir()}
    assert kinds == {"model.safetensors": "sha256", "vocab.txt": "git-sha1"}
    assert (folder / "model.safetensors").stat().st_size == len(PAYLOAD)  # the library saw nothing wrong
    with pytest.raises(IntegrityError, match="published") as err:
        check_snapshot(folder, "hf:zoo-test/blobs")
    assert "\n" not in str(err.value)
    assert not any(folder.iterdir()) and not any((cache / "models--zoo-test--blobs" / "blobs").iterdir())  # both bad files gone
    folder = Path(snapshot_download("zoo-test/blobs", cache_dir=cache))  # the next pull downloads them again
    assert check_snapshot(folder, "hf:zoo-test/blobs") == 2
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files


def test_hub_library_downloads_retry_5xx_then_give_one_line(hub: Hub, zoo_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub.errors import EntryNotFoundError

    from zoo.cache.download import with_retries

    hub.point_hf_here(monkeypatch)
    path = f"/{REPO}/resolve/main/model.safetensors"
    hub.files[path] = PAYLOAD
    hub.plan[path] = [503, 502, "ok"]
    got = with_retries(lambda: _hf_get(hub, "model.safetensors"), "hf:zoo-test/tiny", backoff=0.0)
    assert Path(got).read_bytes() == PAYLOAD and hub.gets[path] == 3
    hub.files[path + "2"] = PAYLOAD[::-1]  # other bytes: the blob of the first file must not satisfy it
    hub.plan[path + "2"] = [503]
    with pytest.raises(DownloadError, match=r"HTTP 503 after 2 attempt\(s\)") as err:
        with_retries(lambda: _hf_get(hub, "model.safetensors2"), "hf:zoo-test/tiny", retries=1, backoff=0.0)
    assert "\n" not in str(err.value) and _hf_cached("model.safetensors2") is None
    with pytest.raises(EntryNotFoundError):  # not transient: raised at once, no retry
        with_retries(lambda: _hf_get(hub, "absent.safetensors"), "hf:zoo-test/tiny", backoff=0.0)


def test_an_unreachable_hub_without_a_cached_copy_is_one_line_at_once() -> None:
    """huggingface_hub raises LocalEntryNotFoundError (multi-line) when it cannot reach the Hub and has no copy; it has
    retried already, so zoo does not retry it again and says what to do in one line."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    from zoo.cache.download import with_retries

    calls = []

    def call():
        calls.append(1)
        raise LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub\nand we cannot find it in the cache.")

    with pytest.raises(DownloadError, match="the Hub could not be reached and no copy is cached") as err:
        with_retries(call, "timm:resnet50.a1_in1k from timm/resnet50.a1_in1k", backoff=0.0)
    assert calls == [1] and "\n" not in str(err.value) and "ZOO_OFFLINE=1" in str(err.value)


def test_an_unreachable_hub_is_one_line_without_the_librarys_retry_log(zoo_home: Path, monkeypatch: pytest.MonkeyPatch, capfd) -> None:
    """No network: huggingface_hub logs each of its own retries ("Retrying in 1s [Retry 1/5]", 45 lines for `zoo pull hf:...`);
    zoo's answer is its one DownloadError line."""
    import socket

    import huggingface_hub.utils._http as hf_http
    from huggingface_hub import HfApi

    from zoo.cache.download import with_retries

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(hf_http.time, "sleep", lambda s: None)  # the library's own backoff, not waited here
    api = HfApi(endpoint=f"http://127.0.0.1:{port}")
    capfd.readouterr()
    with pytest.raises(DownloadError, match=r"connection failed .* after 2 attempt\(s\)") as err:
        with_retries(lambda: api.list_repo_files("zoo-test/tiny"), "hf:zoo-test/tiny", retries=1, backoff=0.0)
    assert "\n" not in str(err.value)
    out, errout = capfd.readouterr()
    assert "Retrying in" not in errout and "thrown while requesting" not in errout, errout


def test_four_processes_pulling_one_hf_repo(hub: Hub, zoo_home: Path, tmp_path: Path) -> None:
    """huggingface_hub's per-blob lock plus zoo's hash check: one valid blob, four successes, one GET."""
    src = tmp_path / "repo"
    src.mkdir()
    (src / "model.safetensors").write_bytes(PAYLOAD)
    (src / "config.json").write_text('{"model_type": "bert"}')
    hub.add_hf_repo("zoo-test/four", src)
    hub.plan["zoo-test/four/model.safetensors"] = ["slow"]
    code = (
        "import os; from huggingface_hub import snapshot_download; from zoo.cache.hub_blobs import check_snapshot\n"
        "folder = snapshot_download('zoo-test/four', cache_dir=os.path.join(os.environ['HF_HOME'], 'hub'))\n"
        "print(check_snapshot(folder, 'hf:zoo-test/four'))\n"
    )
    env = {**os.environ, "HF_ENDPOINT": hub.url}
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("ZOO_OFFLINE", None)
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(4)]
    results = [(p.wait(timeout=120), p.stdout.read().decode().strip(), p.stderr.read().decode()) for p in procs]
    assert all(rc == 0 and out == "2" for rc, out, _ in results), results
    blobs = Path(os.environ["HF_HOME"]) / "hub" / "models--zoo-test--four" / "blobs"
    assert sorted(p.name for p in blobs.iterdir()) == sorted([SHA, git_blob_sha1(b'{"model_type": "bert"}')])
    assert (blobs / SHA).read_bytes() == PAYLOAD and hub.gets["zoo-test/four/model.safetensors"] == 1


def test_a_host_name_that_does_not_resolve_is_not_retried() -> None:
    """No DNS answer means no network here: zoo's own backoff (on top of the library's retries) only made the
    one-line answer wait (`zoo pull hf:...` took 104 s offline); a refused connection is still retried."""
    from zoo.cache.download import _transient_urllib, with_retries

    calls = []

    def unresolvable():
        calls.append(1)
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    with pytest.raises(DownloadError, match=r"did not resolve \(no network\?\) after 1 attempt\(s\)") as err:
        with_retries(unresolvable, "https://example.invalid/w.pth", backoff=0.0, transient=_transient_urllib)
    assert calls == [1] and "\n" not in str(err.value)

    def refused():
        calls.append(2)
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    with pytest.raises(DownloadError, match=r"after 3 attempt\(s\)"):
        with_retries(refused, "https://127.0.0.1:9/w.pth", retries=2, backoff=0.0, transient=_transient_urllib)
    assert calls.count(2) == 3


def test_temp_files_of_killed_writers_are_removed_by_the_next_writer(hub: Hub, ckpt_dir: Path, zoo_home: Path) -> None:
    """A pull, import or manifest write killed midway (SIGKILL, power loss) leaves its ``.<name>.<random>.part``: it
    used to stay for good (one per kill, up to the whole file's size, listed by nothing); the next writer of the same
    file, holding its lock, removes them. Temporary files of other files are left alone."""
    import io
    import signal
    import time

    from zoo.cache.bundle import install_file

    hub.files[NAME] = PAYLOAD
    hub.plan[NAME] = ["slow"]
    dest = ckpt_dir / Path(NAME).name
    code = "import sys; from zoo.cache.download import fetch\nfetch(sys.argv[1], sys.argv[2], sha256=sys.argv[3], progress=False)\n"
    proc = subprocess.Popen([sys.executable, "-c", code, hub.url + NAME, str(dest), SHA], env=os.environ.copy())
    deadline = time.monotonic() + 60
    while not any(ckpt_dir.glob(f".{dest.name}.*.part")) and time.monotonic() < deadline:  # the transfer has begun
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    stale = list(ckpt_dir.glob(f".{dest.name}.*.part"))
    assert len(stale) == 1 and not dest.exists()
    other = ckpt_dir / ".other.pth.abcd1234.part"  # another file's download, perhaps in progress: kept
    other.write_bytes(b"x")
    hub.plan[NAME] = ["ok"]
    fetch(hub.url + NAME, dest, sha256=SHA, progress=False)
    assert _leftovers(ckpt_dir) == [other.name, dest.name]
    # a bundle import's copy, and the manifest's own temporary file
    key = "ZOO_HOME/models/demo/a.bin"
    target = records.path_of(key)
    target.parent.mkdir(parents=True)
    (target.parent / ".a.bin.k1ll3d_x.part").write_bytes(b"half")
    (zoo_home / ".manifest.k1ll3d_x.part").write_text("{", encoding="utf-8")
    install_file(io.BytesIO(PAYLOAD), key, SHA, len(PAYLOAD), "demo:a")
    assert _leftovers(target.parent) == ["a.bin"]
    assert not list(zoo_home.glob(".manifest.*.part")) and records.files()[key]["sha256"] == SHA


def test_an_unresolvable_host_fails_before_the_library_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """huggingface_hub retries a failed connection five times (23 s of back-off, its warnings quieted by zoo): an
    offline `zoo pull hf:...` sat silent for 27 s. with_retries(host=...) asks the resolver first and fails at once,
    unless a proxy (which resolves names itself) is configured."""
    from zoo.cache.download import with_retries

    calls = []
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)

    def resolver(host, *a, **k):
        calls.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    with pytest.raises(DownloadError, match=r"the host name hub\.invalid did not resolve \(no network\? ZOO_OFFLINE=1") as err:
        with_retries(lambda: calls.append("called"), "hf:org/model from https://hub.invalid", host="hub.invalid")
    assert calls == ["hub.invalid"] and "\n" not in str(err.value)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")  # the proxy resolves it: the call is made
    assert with_retries(lambda: calls.append("called") or "ok", "hf:org/model", host="hub.invalid") == "ok"
    assert calls == ["hub.invalid", "called"]


def test_disk_full_mid_download_is_one_line_that_says_what_to_do(hub: Hub, ckpt_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A disk that fills up mid-transfer raised a bare `[Errno 28] No space left on device` (the CLI added "check the path
    and its permissions"); it is one line naming the folder, the variable that chose it and what to do; nothing is kept."""
    import errno
    import io

    from zoo.cli import main

    hub.files[NAME] = PAYLOAD
    real_fdopen = os.fdopen

    class Full(io.RawIOBase):
        def __init__(self, fh):
            self.fh, self.n = fh, 0

        def write(self, b):
            self.n += len(b)
            if self.n > 100_000:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.fh.write(b)

        def __exit__(self, *a):
            self.fh.close()

    monkeypatch.setattr("zoo.cache.download.os.fdopen", lambda fd, mode="r", *a, **k: Full(real_fdopen(fd, mode, *a, **k)) if "w" in mode else real_fdopen(fd, mode, *a, **k))
    dest = ckpt_dir / Path(NAME).name
    with pytest.raises(DownloadError) as err:
        fetch(hub.url + NAME, dest, sha256_prefix=SHA[:8], progress=False)
    msg = str(err.value)
    assert "no space left on the device of" in msg and "point TORCH_HOME at a folder on another disk" in msg and "\n" not in msg
    assert "Check the URL and the network" not in msg and hub.gets[NAME] == 1  # not retried: a full disk stays full
    assert _leftovers(ckpt_dir) == []
    assert main(["cache", "verify"]) == 0  # nothing recorded


def test_read_only_cache_is_one_line_naming_the_variable(hub: Hub, ckpt_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache folder zoo may not write (a shared, read-only TORCH_HOME) said "Permission denied: .../.x.part; check the
    path and its permissions": it names the folder and the variable to point elsewhere. (The tests run as root, which
    writes anywhere: the refusal is the operating system's answer, raised where the temporary file is made.)"""
    import errno

    from zoo.cache import download

    hub.files[NAME] = PAYLOAD
    ckpt_dir.mkdir(parents=True, exist_ok=True)

    def refused(*args, dir=None, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dir))

    monkeypatch.setattr(download.tempfile, "mkstemp", refused)
    with pytest.raises(DownloadError) as err:
        fetch(hub.url + NAME, ckpt_dir / Path(NAME).name, sha256_prefix=SHA[:8], progress=False)
    msg = str(err.value)
    assert f"{ckpt_dir} cannot be written" in msg and "point TORCH_HOME at a folder you can write" in msg and "\n" not in msg
    assert _leftovers(ckpt_dir) == [] and hub.gets.get(NAME, 0) == 0
