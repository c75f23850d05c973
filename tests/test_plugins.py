"""Third-party plugins installed for real (pip --target), broken, slow, duplicate and unavailable ones."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import zoo
from zoo import Source, hookimpl
from zoo.catalog import ModelCard
from zoo.errors import DuplicateModelError, MissingFrameworkError, PluginUnavailableError
from zoo.registrar import Registrar

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "example_plugin"


def _package(root: Path, dist: str, module: str, ep_name: str, body: str) -> Path:
    pkg = root / dist
    (pkg / module).mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""\
            [build-system]
            requires = ["setuptools>=68"]
            build-backend = "setuptools.build_meta"
            [project]
            name = "{dist}"
            version = "0.0.1"
            [project.entry-points.zoo]
            {ep_name} = "{module}"
            [tool.setuptools.packages.find]
            include = ["{module}*"]
            """
        )
    )
    (pkg / module / "__init__.py").write_text(textwrap.dedent(body))
    return pkg


DUP_BODY = """
from zoo import hookimpl
@hookimpl
def zoo_register_models(register):
    register({"id": "example:tinycnn.random", "family": "tinycnn", "modality": "image", "framework": "torch"})
"""

MISSING_BODY = """
from zoo import hookimpl, Source
@hookimpl
def zoo_register_sources(register):
    register(Source(name="needsfw", framework="torch", loader="zoo_needsfw.x:load",
                    requires=("definitely_not_installed_fw",), install="pip install needsfw-framework"))
@hookimpl
def zoo_register_models(register):
    register({"id": "needsfw:model.v1", "family": "x", "modality": "image", "framework": "torch"})
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """Install the docs' example plugin and four throwaway plugin packages into a target dir."""
    src = tmp_path_factory.mktemp("pkgs")
    target = tmp_path_factory.mktemp("site")
    example = src / "example_plugin"
    shutil.copytree(EXAMPLE, example, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
    pkgs = [
        example,
        _package(src, "zoo-broken", "zoo_broken", "broken", "raise RuntimeError('boom: this plugin is broken')\n"),
        _package(src, "zoo-slow", "zoo_slow", "slow", "import time\ntime.sleep(30)\n"),
        _package(src, "zoo-dup", "zoo_dup", "zzdup", DUP_BODY),
        _package(src, "zoo-needsfw", "zoo_needsfw", "needsfw", MISSING_BODY),
    ]
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target), *map(str, pkgs)],
        check=True,
        capture_output=True,
    )
    return target


def run_zoo(site: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    e = os.environ.copy()
    e["PYTHONPATH"] = os.pathsep.join([str(site), e.get("PYTHONPATH", "")])
    e["ZOO_PLUGIN_TIMEOUT"] = "1"
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "zoo", *args], capture_output=True, text=True, env=e, timeout=120)


def test_third_party_plugin_and_failures(site):
    t0 = time.perf_counter()
    out = run_zoo(site, "plugins", "--json")
    elapsed = time.perf_counter() - t0
    assert out.returncode == 0, out.stderr
    status = {p["name"]: p for p in json.loads(out.stdout)}
    assert status["example"]["state"] == "ok"
    assert status["example"]["dist"] == "zoo-example" and status["example"]["sources"] == ["example"]
    assert status["broken"]["state"] == "failed"
    assert "boom: this plugin is broken" in status["broken"]["reason"]
    assert status["slow"]["state"] == "failed" and "ZOO_PLUGIN_TIMEOUT" in status["slow"]["reason"]
    assert elapsed < 15, "a slow plugin must not hold up the command"
    # the duplicate: plugins register in entry-point name order, so zzdup comes second and is refused, naming both
    assert status["zzdup"]["state"] == "failed"
    assert "'example'" in status["zzdup"]["reason"] and "'zzdup'" in status["zzdup"]["reason"]
    assert status["needsfw"]["state"] == "unavailable"
    assert status["needsfw"]["install"] == "pip install needsfw-framework"
    assert "definitely_not_installed_fw" in status["needsfw"]["reason"]


def test_third_party_models_listed_and_loadable(site):
    out = run_zoo(site, "list", "--source", "example", "--json")
    assert out.returncode == 0, out.stderr
    ids = [c["id"] for c in json.loads(out.stdout)]
    assert ids == ["example:tinycnn.random", "example:tinycnn.wide"]
    assert "zzdup" in out.stderr and "example" in out.stderr  # the warning names both
    info = run_zoo(site, "info", "example:tinycnn.wide", "--json")
    assert json.loads(info.stdout)["origin"] == "example"
    # every other command still works with broken plugins installed
    assert run_zoo(site, "search", "toy", "cnn").returncode == 0
    assert run_zoo(site, "--help").returncode == 0
    code = "import zoo; b = zoo.load('example:tinycnn.random'); import numpy as np; print(b.embed(np.zeros((8, 8, 3), 'uint8')).shape)"
    e = os.environ.copy()
    e["PYTHONPATH"] = str(site)
    e["ZOO_PLUGIN_TIMEOUT"] = "1"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=120)
    assert res.stdout.strip() == "(1, 16)", res.stderr


def test_example_cards_state_the_models_parameter_counts(site):
    """The guide's catalog entries (zoo list's params column) are the loaded models' real sizes."""
    code = ("import zoo\n"
            "for c in zoo.list_models(source='example'):\n"
            "    print(c.id, c.params, sum(p.numel() for p in zoo.load(c.id).model.parameters()))")
    e = os.environ.copy()
    e["PYTHONPATH"] = str(site)
    e["ZOO_PLUGIN_TIMEOUT"] = "1"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=120)
    rows = [line.split() for line in res.stdout.splitlines()]
    assert len(rows) == 2, res.stderr
    for model_id, card_params, real in rows:
        assert card_params == real, f"{model_id}: card says {card_params} parameters, the model has {real}"
    guide = (ROOT / "docs" / "plugins.md").read_text()
    assert f'"params": {rows[0][2]},' in guide  # the guide's snippet shows the first entry


def test_missing_framework_names_pip_line(site):
    out = run_zoo(site, "list", "--source", "needsfw", "--json")
    assert out.returncode == 0
    code = "import zoo; zoo.load('needsfw:model.v1')"
    e = os.environ.copy()
    e["PYTHONPATH"] = str(site)
    e["ZOO_PLUGIN_TIMEOUT"] = "1"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e)
    assert "MissingFrameworkError" in res.stderr
    assert "run `pip install needsfw-framework`" in res.stderr


def test_allow_and_deny_lists(site):
    out = run_zoo(site, "plugins", "--json", env={"ZOO_PLUGINS": "example"})
    status = {p["name"]: p["state"] for p in json.loads(out.stdout)}
    assert status["example"] == "ok" and status["broken"] == "disabled" and status["slow"] == "disabled"
    out = run_zoo(site, "plugins", "--json", env={"ZOO_DISABLE_PLUGINS": "example,slow"})
    status = {p["name"]: p["state"] for p in json.loads(out.stdout)}
    assert status["example"] == "disabled" and status["zzdup"] == "ok"
    listed = run_zoo(site, "list", "--json", env={"ZOO_DISABLE_PLUGINS": "example,slow"})
    assert "example:tinycnn.random" in listed.stdout  # now registered by dup, no conflict
    assert "warning" not in out.stderr
    # a name no plugin has is a typo: said on stderr, the command still runs
    out = run_zoo(site, "plugins", "--json", env={"ZOO_PLUGINS": "example,exampel", "ZOO_DISABLE_PLUGINS": "slo"})
    assert out.returncode == 0 and {p["name"]: p["state"] for p in json.loads(out.stdout)}["example"] == "ok"
    assert "ZOO_PLUGINS names exampel, which no installed plugin is called" in out.stderr
    assert "ZOO_DISABLE_PLUGINS names slo," in out.stderr
    # a timeout that is not a positive number of seconds: one line, exit 2
    for bad in ("abc", "-1"):
        out = run_zoo(site, "plugins", env={"ZOO_PLUGIN_TIMEOUT": bad})
        assert out.returncode == 2 and out.stderr.count("\n") == 1 and f"ZOO_PLUGIN_TIMEOUT={bad!r} is not a positive number" in out.stderr


# ---- in-process: registrar and host -----------------------------------------------------------


def test_registrar_refuses_duplicates_naming_both():
    sources: dict = {}
    models: dict = {}
    a = Registrar("plugin_a", sources, models)
    a({"id": "x:m.v1", "family": "m", "modality": "image", "framework": "torch"})
    a(Source(name="x", framework="torch", loader="m:f"))
    assert models == {} and a.commit() == 1  # staged until the plugin's hook succeeded
    b = Registrar("plugin_b", sources, models)
    with pytest.raises(DuplicateModelError, match="'plugin_a' and plugin 'plugin_b'"):
        b({"id": "x:m.v1", "family": "m", "modality": "image", "framework": "torch"})
    with pytest.raises(DuplicateModelError, match="Source 'x'"):
        b(Source(name="x", framework="torch", loader="m:f"))
    with pytest.raises(Exception, match="modality"):
        b({"id": "x:n.v1", "family": "m", "modality": "sound", "framework": "torch"})


class InProcPlugin:
    @hookimpl
    def zoo_register_sources(self, register):
        register(Source(name="inproc", framework="torch", loader=self.load))

    @hookimpl
    def zoo_register_models(self, register):
        register(ModelCard(id="inproc:m.v1", family="m", modality="text", framework="torch"))

    @hookimpl
    def zoo_resolve_weights(self, model_id, card):
        return f"/weights/{model_id.name}" if model_id.source == "inproc" else None

    def load(self, model_id, card, **options):
        return ("loaded", str(model_id), card.id if card else None, options, zoo.resolve_weights(model_id, card))


def test_in_process_plugin_load_and_resolve():
    zoo.reset(extra_plugins={"inproc": InProcPlugin()})
    assert zoo.info("inproc:m.v1").origin == "inproc"
    assert zoo.info("inproc:m").id == "inproc:m.v1"  # bare name -> default tag
    result = zoo.load("inproc:m.v1", pooling="mean")
    assert result == ("loaded", "inproc:m.v1", "inproc:m.v1", {"pooling": "mean"}, "/weights/m")


class HalfwayPlugin:
    """Registers a source, then its model hook raises."""

    @hookimpl
    def zoo_register_sources(self, register):
        register(Source(name="halfway", framework="torch", loader="zoo_halfway_missing:load"))

    @hookimpl
    def zoo_register_models(self, register):
        register({"id": "halfway:m.v1", "family": "m", "modality": "image", "framework": "torch"})
        raise RuntimeError("boom after the sources")


def test_failed_plugin_keeps_nothing_it_registered():
    """hooks.md: a hook that raises marks its plugin failed and nothing it registered is kept (its source too)."""
    from zoo.errors import UnknownSourceError

    zoo.reset(extra_plugins={"halfway": HalfwayPlugin()})
    try:
        status = {p.name: p for p in zoo.plugins()}["halfway"]
        assert status.state == "failed" and "boom after the sources" in status.reason
        assert status.sources == [] and status.models == 0
        assert "halfway" not in zoo.sources()
        with pytest.raises(UnknownSourceError):  # one line, not the loader's ModuleNotFoundError
            zoo.load("halfway:m.v1")
    finally:
        zoo.reset()


def test_source_without_plugin_names_install_line(monkeypatch):
    monkeypatch.setenv("ZOO_PLUGINS", "")  # every plugin disabled: only the catalog remains
    zoo.reset()
    with pytest.raises(PluginUnavailableError) as info:
        zoo.load("keras:EfficientNetB0.imagenet")
    msg = str(info.value)
    assert "pip install 'zoo-hub[tf]'" in msg and "\n" not in msg


def test_missing_framework_error_in_process():
    src = Source(name="s", framework="torch", loader="x:y", requires=("definitely_not_installed_fw",), install="pip install s-fw")
    with pytest.raises(MissingFrameworkError, match="run `pip install s-fw`"):
        src.load_function()


def test_example_plugin_runs_zoo_contract_suite_against_itself(site, tmp_path):
    """A third-party package runs zoo.testing's contract suites on itself, as the guide shows."""
    tests = tmp_path / "tests"
    shutil.copytree(EXAMPLE / "tests", tests)
    e = os.environ.copy()
    e["PYTHONPATH"] = str(site)
    e["ZOO_PLUGIN_TIMEOUT"] = "1"
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "zoo.testing", "-p", "no:cacheprovider", str(tests)],
        capture_output=True, text=True, env=e, cwd=tmp_path, timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:]
    from zoo.testing import BackboneContract, PluginContract

    contract = sum(1 for c in (BackboneContract, PluginContract) for name in dir(c) if name.startswith("test_"))
    assert f"{contract} passed" in out.stdout, out.stdout[-500:]  # every contract test ran on the example and passed
