import json
import time
from importlib import metadata

from zoo.listing import cached_listing, write_json_atomic

BUILDER = """
import json, sys
json.dump({"version": "x", "models": [{"id": "fake:built.v1"}]}, open(sys.argv[1], "w"))
"""


def _setup(tmp_path, monkeypatch):
    (tmp_path / "fakebuilder_zoo.py").write_text(BUILDER)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    return metadata.version("pluggy")


def test_snapshot_used_when_version_matches(tmp_path, monkeypatch):
    version = _setup(tmp_path, monkeypatch)
    snap = tmp_path / "listing.json"
    snap.write_text(json.dumps({"version": version, "models": [{"id": "fake:snap.v1"}]}))
    assert cached_listing("fake", "pluggy", snap, "fakebuilder_zoo") == [{"id": "fake:snap.v1"}]


def test_no_snapshot_builds_once_and_caches(tmp_path, monkeypatch, zoo_home):
    version = _setup(tmp_path, monkeypatch)
    out = cached_listing("fake", "pluggy", tmp_path / "missing.json", "fakebuilder_zoo")
    assert out == [{"id": "fake:built.v1"}]
    assert (zoo_home / "listings" / f"fake-{version}.json").is_file()
    assert not list((zoo_home / "listings").glob("*.build"))
    # a broken builder now is not called again: the cache answers
    out = cached_listing("fake", "pluggy", tmp_path / "missing.json", "no_such_builder_module")
    assert out == [{"id": "fake:built.v1"}]


def test_stale_snapshot_answers_at_once_and_rebuilds_in_background(tmp_path, monkeypatch, zoo_home):
    version = _setup(tmp_path, monkeypatch)
    snap = tmp_path / "listing.json"
    snap.write_text(json.dumps({"version": "0.0-old", "models": [{"id": "fake:old.v1"}]}))
    assert cached_listing("fake", "pluggy", snap, "fakebuilder_zoo") == [{"id": "fake:old.v1"}]
    cache = zoo_home / "listings" / f"fake-{version}.json"
    for _ in range(100):
        if cache.is_file():
            break
        time.sleep(0.1)
    assert json.loads(cache.read_text())["models"] == [{"id": "fake:built.v1"}]
    assert cached_listing("fake", "pluggy", snap, "fakebuilder_zoo") == [{"id": "fake:built.v1"}]


def test_failed_build_and_missing_framework(tmp_path, monkeypatch):
    _setup(tmp_path, monkeypatch)
    assert cached_listing("fake", "pluggy", tmp_path / "missing.json", "no_such_builder_module") == []
    assert cached_listing("fake", "definitely-not-installed-dist", tmp_path / "x.json", "fakebuilder_zoo") == []


def test_atomic_write_leaves_no_temp(tmp_path):
    target = tmp_path / "a" / "b.json"
    write_json_atomic(target, {"k": 1})
    assert json.loads(target.read_text()) == {"k": 1}
    assert [p.name for p in target.parent.iterdir()] == ["b.json"]
