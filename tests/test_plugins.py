"""Third-party plugins installed for real (pip --target), broken, slow, duplicate and unavailable ones."""

from __future__ import annotations

import argparse
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
    # zoo info on an id of that source: the missing framework, not "Unknown model" (it lists nothing while unavailable)
    out = run_zoo(site, "info", "needsfw:model.v1", env={"ZOO_DISABLE_PLUGINS": "zzdup"})
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "Source 'needsfw' needs definitely_not_installed_fw, which is not installed: run `pip install needsfw-framework`" in out.stderr


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


def test_disabled_or_failed_third_party_source_is_named_not_unknown(site):
    """A source that only its (disabled or failed) plugin declares: the error says the plugin is disabled, not
    'Unknown source', which sent the user looking for a plugin that is installed."""
    for env, state in (({"ZOO_DISABLE_PLUGINS": "example"}, "disabled (ZOO_DISABLE_PLUGINS)"), ({"ZOO_PLUGINS": "broken"}, "disabled (not in ZOO_PLUGINS)")):
        for command in (("info", "example:tinycnn.random"), ("pull", "example:tinycnn.random"), ("list", "--source", "example")):
            out = run_zoo(site, *command, env=env)
            assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
            assert f"Source 'example' cannot be used: its plugin is {state}" in out.stderr


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
    with pytest.raises(DuplicateModelError, match="Source 'x'") as err:
        b(Source(name="x", framework="torch", loader="m:f"))
    # the one to keep may be either (a third-party plugin named earlier takes a built-in's source): both remedies
    assert "the first, in entry-point name order, keeps it" in str(err.value)
    assert "ZOO_DISABLE_PLUGINS=plugin_b" in str(err.value) and "ZOO_DISABLE_PLUGINS=plugin_a" in str(err.value)
    with pytest.raises(Exception, match="modality"):
        b({"id": "x:n.v1", "family": "m", "modality": "sound", "framework": "torch"})


@pytest.mark.parametrize("fields, problem", [
    ({"name": None}, "name None is not an id prefix"),
    ({"name": "My Source"}, "name 'My Source' is not an id prefix"),
    ({"framework": "numpy"}, "framework 'numpy' is not 'torch' or 'tensorflow'"),
    ({"loader": "zoo_x.loader"}, "loader 'zoo_x.loader' is not 'module:function'"),
    ({"requires": "torch"}, "requires 'torch' is not a tuple of import names"),
])
def test_registrar_refuses_a_malformed_source(fields, problem, monkeypatch):
    """A Source zoo cannot use is refused when registered, in one line: name=None crashed `zoo plugins`,
    `zoo list` and `zoo info` for every source (sorting None with str), requires="torch" read as t, o, r, c, h."""
    from zoo.errors import InvalidInputError

    src = Source(**{"name": "x", "framework": "torch", "loader": "m:f", **fields})
    with pytest.raises(InvalidInputError, match=problem):
        Registrar("p", {}, {})(src)

    class BadSourcePlugin:
        @hookimpl
        def zoo_register_sources(self, register):
            register(src)

    monkeypatch.setenv("ZOO_PLUGINS", "")
    zoo.reset(extra_plugins={"inproc": InProcPlugin(), "badsrc": BadSourcePlugin()})
    assert {c.id for c in zoo.list_models(source="inproc")} == {"inproc:m.v1"}
    status = {p.name: p for p in zoo.plugins()}
    assert status["badsrc"].state == "failed" and problem in status["badsrc"].reason
    zoo.reset()


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


class RaisingWeightsPlugin:
    """A mirror plugin whose firstresult hooks crash, or answer the wrong type."""

    def __init__(self, answer=None):
        self.answer = answer

    @hookimpl
    def zoo_resolve_weights(self, model_id, card):
        if self.answer is None:
            raise RuntimeError("mirror down")
        return self.answer

    @hookimpl
    def zoo_model_files(self, model_id, card):
        if self.answer is None:
            raise RuntimeError("mirror down")
        return self.answer


@pytest.mark.parametrize("answer", [None, 42])
def test_broken_firstresult_hook_is_skipped_not_fatal(monkeypatch, capsys, answer):
    """A plugin asked first whose zoo_resolve_weights / zoo_model_files raises (or answers a number) is
    marked failed and named in one line; the other plugins still answer, so loading still works."""
    from zoo._api import _get

    monkeypatch.setenv("ZOO_PLUGINS", "")
    zoo.reset(extra_plugins={"inproc": InProcPlugin(), "mirror": RaisingWeightsPlugin(answer)})  # mirror is asked first
    result = zoo.load("inproc:m.v1")
    assert result[-1] == "/weights/m"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "plugin 'mirror' was skipped" in err and "ZOO_DISABLE_PLUGINS=mirror" in err
    status = {p.name: p for p in zoo.plugins()}
    assert status["mirror"].state == "failed" and status["inproc"].state == "ok"
    assert _get().host.model_files(zoo.parse_id("inproc:m.v1"), None) is None  # the failed plugin is not asked again
    zoo.reset()


class ExitingPlugin:
    """A plugin whose hooks call sys.exit() (a config check that ends the program, argparse in a hook)."""

    @hookimpl
    def zoo_register_models(self, register):
        sys.exit("exiter: config missing")

    @hookimpl
    def zoo_resolve_weights(self, model_id, card):
        sys.exit("exiter: config missing")

    @hookimpl
    def zoo_register_commands(self, cli):
        sys.exit("exiter: config missing")


def test_plugin_calling_sys_exit_does_not_end_zoo(monkeypatch, capsys):
    """SystemExit from a plugin's hook is a failure of that plugin, like any exception: it ended every zoo command."""
    from zoo import cli

    monkeypatch.setenv("ZOO_PLUGINS", "")
    monkeypatch.delenv("ZOO_DEBUG", raising=False)
    class CommandExiter:  # registers nothing else, so only its command hook can fail it
        @hookimpl
        def zoo_register_commands(self, cli):
            sys.exit("cmdexit: config missing")

    zoo.reset(extra_plugins={"inproc": InProcPlugin(), "exiter": ExitingPlugin(), "cmdexit": CommandExiter()})
    assert [c.id for c in zoo.list_models(source="inproc")] == ["inproc:m.v1"]
    assert zoo.load("inproc:m.v1")[-1] == "/weights/m"
    status = {p.name: p for p in zoo.plugins()}
    assert status["exiter"].state == "failed" and "SystemExit: exiter: config missing" in status["exiter"].reason
    assert cli.main(["list", "--source", "inproc", "--json"]) == 0
    err = capsys.readouterr().err
    assert "plugin 'cmdexit' failed to add its commands (cmdexit: config missing)" in err
    assert "exiter' failed to add" not in err  # failed already: its command hook is not run (it keeps nothing)
    zoo.reset()


PRINTER_BODY = """
print("loading printer plugin v1")
from zoo import hookimpl
@hookimpl
def zoo_register_models(register):
    print("registering printer models")
    register({"id": "printer:m.v1", "family": "m", "modality": "image", "framework": "torch"})
@hookimpl
def zoo_register_commands(cli):
    print("adding printer commands")
"""


def test_plugin_print_does_not_corrupt_json_output(tmp_path):
    """What a plugin prints while imported or registering goes to stderr: `zoo list --json` stays JSON."""
    site = _fake_dist(tmp_path / "site", "printer", PRINTER_BODY)
    e = {**os.environ, "PYTHONPATH": str(site), "ZOO_PLUGINS": "printer"}
    out = subprocess.run([sys.executable, "-m", "zoo", "list", "--source", "printer", "--json"], capture_output=True, text=True, env=e, timeout=120)
    assert out.returncode == 0, out.stderr
    assert [c["id"] for c in json.loads(out.stdout)] == ["printer:m.v1"]
    assert "loading printer plugin v1" in out.stderr and "adding printer commands" in out.stderr


def test_ctrl_c_while_a_plugin_imports_names_it(tmp_path):
    """Ctrl-C while zoo waits for a slow plugin's import: one line naming the plugin and how to skip it, exit 130,
    not a KeyboardInterrupt traceback through the plugin host."""
    import signal

    started = tmp_path / "started"
    site = _fake_dist(tmp_path / "site", "sleepy", f"import pathlib, time\npathlib.Path({str(started)!r}).touch()\ntime.sleep(60)\n")
    e = {**os.environ, "PYTHONPATH": str(site), "ZOO_PLUGIN_TIMEOUT": "30"}
    # a shell's background job ignores SIGINT, and a child that starts with it ignored never sees Ctrl-C: restore it
    proc = subprocess.Popen([sys.executable, "-m", "zoo", "plugins"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:  # zoo is waiting on the plugin's import now
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert err == "zoo: interrupted while loading plugin(s) sleepy: ZOO_DISABLE_PLUGINS=sleepy skips them\n"


def test_hanging_registration_hook_times_out(monkeypatch, capsys):
    """A zoo_register_models that never returns (a listing fetched from a dead server) is given
    ZOO_PLUGIN_TIMEOUT seconds, then its plugin is failed and named in one line; the others are listed."""
    import threading

    release = threading.Event()

    class HangingPlugin:
        @hookimpl
        def zoo_register_sources(self, register):
            register(Source(name="hang", framework="torch", loader="zoo_hang_missing:load"))

        @hookimpl
        def zoo_register_models(self, register):
            release.wait(60)
            register({"id": "hang:m.v1", "family": "m", "modality": "image", "framework": "torch"})

    monkeypatch.setenv("ZOO_PLUGINS", "")
    monkeypatch.setenv("ZOO_PLUGIN_TIMEOUT", "0.5")
    zoo.reset(extra_plugins={"inproc": InProcPlugin(), "hang": HangingPlugin()})
    try:
        t0 = time.perf_counter()
        ids = [c.id for c in zoo.list_models(source="inproc")]
        assert time.perf_counter() - t0 < 10
        assert ids == ["inproc:m.v1"]
        status = {p.name: p for p in zoo.plugins()}
        assert status["hang"].state == "failed" and "ZOO_PLUGIN_TIMEOUT" in status["hang"].reason
        assert "hang" not in zoo.sources() and status["hang"].sources == []  # a failed plugin keeps nothing (hooks.md)
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "plugin 'hang' was skipped" in err and "ZOO_DISABLE_PLUGINS=hang" in err
        release.set()
        time.sleep(0.2)
        assert "hang:m.v1" not in {c.id for c in zoo.list_models()}  # what it registered late is not kept
    finally:
        release.set()
        zoo.reset()


class NumpyCardPlugin:
    @hookimpl
    def zoo_register_models(self, register):
        register({"id": "skfeat:pca.digits", "family": "pca", "modality": "image", "framework": "numpy"})


class NotACardPlugin:
    @hookimpl
    def zoo_register_models(self, register):
        register(42)


class WrongArgumentPlugin:
    @hookimpl
    def zoo_register_models(self, registrar):  # the spec's argument is called register
        registrar({"id": "wrongarg:m.v1", "family": "m", "modality": "image", "framework": "torch"})


class ReturningPlugin:
    @hookimpl
    def zoo_register_models(self, register):
        return [{"id": "returning:m.v1", "family": "m", "modality": "image", "framework": "torch"}]


def test_failed_plugin_reason_says_what_is_wrong(monkeypatch):
    """`zoo plugins` shows why a plugin failed in one line that names the problem: the card's id, field
    and value (not pydantic's '1 validation error for ModelCard'), and pluggy's argument complaint."""
    monkeypatch.setenv("ZOO_PLUGINS", "")
    zoo.reset(extra_plugins={"skfeat": NumpyCardPlugin(), "notacard": NotACardPlugin(), "returning": ReturningPlugin()})
    status = {p.name: p for p in zoo.plugins()}
    reason = status["skfeat"].reason
    assert status["skfeat"].state == "failed" and "\n" not in reason
    assert "'skfeat:pca.digits'" in reason and "framework" in reason and "'numpy'" in reason
    assert "register() takes a zoo.Source, a zoo.ModelCard or a dict" in status["notacard"].reason
    assert status["returning"].state == "failed"  # returned its cards instead of registering them: was ok, 0 models
    assert status["returning"].reason.startswith("zoo_register_models returned a list; call register(item) or register.many(items)")
    from zoo._plugins import PluginHost, _reason

    with pytest.raises(Exception) as info:  # what an entry-point plugin's registration raises, made its reason
        PluginHost().pm.register(WrongArgumentPlugin(), name="wrongarg")
    assert "{'registrar'} are declared in the hookimpl but can not be found in the hookspec" in _reason(info.value)
    zoo.reset()


def _fake_dist(site: Path, name: str, body: str) -> Path:
    """An installed distribution ``zoo-NAME`` (module ``zoo_NAME``, entry point ``NAME``) without pip: a dist-info folder."""
    info = site / f"zoo_{name}-0.0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: zoo-{name}\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text(f"[zoo]\n{name} = zoo_{name}\n")
    (site / f"zoo_{name}.py").write_text(textwrap.dedent(body))
    return site


TYPO_BODY = """
from zoo import hookimpl
@hookimpl
def zoo_register_model(register):
    register({"id": "typo:m.v1", "family": "m", "modality": "image", "framework": "torch"})
"""


def test_misspelt_hook_is_named(tmp_path):
    """A @hookimpl whose name is no hook never runs: `zoo plugins` says so and suggests the hook (it said ok, 0 models)."""
    site = _fake_dist(tmp_path / "site", "typo", TYPO_BODY)
    e = {**os.environ, "PYTHONPATH": str(site), "ZOO_PLUGINS": "typo"}
    out = subprocess.run([sys.executable, "-m", "zoo", "plugins", "--json"], capture_output=True, text=True, env=e, timeout=120)
    status = {p["name"]: p for p in json.loads(out.stdout)}["typo"]
    assert status["state"] == "ok" and status["models"] == 0
    assert status["reason"] == "zoo_register_model (did you mean zoo_register_models?): not a zoo hook, never called (see docs/hooks.md)"


def _plugin_contract_run(tmp_path, name, body, **env):
    """``pytest`` of zoo's PluginContract, in a subprocess, against a plugin distribution made of ``body``."""
    site = _fake_dist(tmp_path / "site", name, body)
    (tmp_path / f"test_{name}.py").write_text(textwrap.dedent(f'''\
        import pytest
        from zoo.testing import PluginContract

        @pytest.fixture
        def plugin_name():
            return {name!r}

        class TestContract(PluginContract):
            pass
        '''))
    e = {**os.environ, "PYTHONPATH": str(site), **env}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / f"test_{name}.py")],
                          capture_output=True, text=True, env=e, cwd=tmp_path, timeout=300)


def test_plugin_contract_catches_a_framework_imported_by_a_hook(tmp_path):
    """The contract's lightness check fails a plugin whose zoo_register_models imports torch (it only
    imported the module, which stays light, so it passed)."""
    out = _plugin_contract_run(tmp_path, "heavyhook", HEAVY_HOOK_BODY)
    assert "1 failed, 2 passed" in out.stdout, out.stdout[-2000:]
    assert "hooks loaded torch" in out.stdout


ORPHAN_BODY = """
from zoo import Source, hookimpl
@hookimpl
def zoo_register_sources(register):
    register(Source(name="sk-feat", framework="torch", loader="zoo_orphan:load"))
@hookimpl
def zoo_register_models(register):
    register({"id": "skfeat:m.v1", "family": "m", "modality": "text", "framework": "torch"})  # not the source's name
"""


def test_plugin_contract_catches_models_of_a_source_nobody_serves(tmp_path):
    """The contract's id check fails cards whose source no plugin serves (ids are validated when registered,
    so it could not fail)."""
    out = _plugin_contract_run(tmp_path, "orphan", ORPHAN_BODY, ZOO_PLUGINS="orphan")
    assert "1 failed, 2 passed" in out.stdout, out.stdout[-2000:]
    assert "skfeat:m.v1: no installed plugin serves source 'skfeat'" in out.stdout


HEAVY_HOOK_BODY = """
from zoo import Source, hookimpl
@hookimpl
def zoo_register_sources(register):
    register(Source(name="heavyhook", framework="torch", loader="zoo_heavyhook:load"))
@hookimpl
def zoo_register_models(register):
    import torch  # noqa: F401 - the mistake under test
    register({"id": "heavyhook:m.v1", "family": "m", "modality": "image", "framework": "torch"})
"""


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
    from zoo.errors import PluginUnavailableError

    zoo.reset(extra_plugins={"halfway": HalfwayPlugin()})
    try:
        status = {p.name: p for p in zoo.plugins()}["halfway"]
        assert status.state == "failed" and "boom after the sources" in status.reason
        assert status.sources == [] and status.models == 0
        assert "halfway" not in zoo.sources()
        with pytest.raises(PluginUnavailableError, match="its plugin is failed .*boom after the sources"):
            zoo.load("halfway:m.v1")  # one line naming why, not the loader's ModuleNotFoundError
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


def test_loader_that_cannot_be_imported_is_one_line():
    """A Source whose loader module or function is missing (a packaging mistake, a dependency it did not
    declare in requires) says so naming the plugin and the install line, not ModuleNotFoundError's traceback."""
    for loader, what in (("zoo_no_such_module_xyz.loader:load", "ModuleNotFoundError"), ("zoo.registrar:no_such_loader", "AttributeError")):
        src = Source(name="s", framework="torch", loader=loader, install="pip install zoo-s", plugin="splug")
        with pytest.raises(PluginUnavailableError) as info:
            src.load_function()
        msg = str(info.value)
        assert "\n" not in msg and f"{loader!r} of plugin 'splug' cannot be imported ({what}" in msg and "Run `pip install zoo-s`" in msg


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


class CrashingLoaderPlugin(InProcPlugin):
    """A source whose loader fails as loaders do on a damaged file (a ValueError from the weights reader)."""

    def load(self, model_id, card, **options):
        raise ValueError("unexpected end of data in weights.bin\nsecond line of the reader's message")


def test_a_loader_that_crashes_is_one_line_on_the_command_line_and_keeps_its_type_in_python(capsys):
    zoo.reset(extra_plugins={"inproc": CrashingLoaderPlugin()})
    try:
        with pytest.raises(ValueError, match="unexpected end of data") as info:  # callers catch what the loader raised
            zoo.load("inproc:m.v1")
        assert info.value.zoo_loader == ("inproc:m.v1", "inproc")
        from zoo import cli

        assert cli.main(["predict", "inproc:m.v1", "some text"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert err.startswith("zoo: error: loading inproc:m.v1 failed in plugin 'inproc': ValueError: unexpected end of data in weights.bin;")
        assert "zoo cache verify" in err and "ZOO_DEBUG=1" in err and "ZOO_DISABLE_PLUGINS=inproc" in err
    finally:
        zoo.reset()


def test_a_failed_plugin_adds_no_commands(monkeypatch, capsys):
    """A plugin failed by its registration hooks keeps nothing (hooks.md): its zoo_register_commands is not run,
    so the CLI offers no command whose plugin `zoo plugins` lists as failed."""
    from zoo import cli

    class BrokenWithCommand:
        @hookimpl
        def zoo_register_sources(self, register):
            raise RuntimeError("broken: bad config")

        @hookimpl
        def zoo_register_commands(self, cli):
            p = cli.add_parser("broken-hello", help="hello from a broken plugin")
            p.set_defaults(func=lambda args: print("hello") or 0)

    monkeypatch.setenv("ZOO_PLUGINS", "")
    zoo.reset(extra_plugins={"inproc": InProcPlugin(), "broken": BrokenWithCommand()})
    try:
        assert {p.name: p for p in zoo.plugins()}["broken"].state == "failed"
        parser = cli.build_parser(plugin_commands=True)
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        assert "broken-hello" not in sub.choices and "broken-hello" not in cli.PLUGIN_COMMANDS
        with pytest.raises(SystemExit) as exc:
            cli.main(["broken-hello"])
        assert exc.value.code == 2 and "invalid choice: 'broken-hello'" in capsys.readouterr().err
    finally:
        zoo.reset()
