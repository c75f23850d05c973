from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import zoo
from zoo import cli

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "example_plugin"


@pytest.fixture
def example_plugin(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    import zoo_example

    zoo.reset(extra_plugins={"example": zoo_example})
    return zoo_example


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_json_and_plain(capsys, example_plugin):
    code, out, _ = run(capsys, "list", "--source", "example", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["id"] for r in rows] == ["example:tinycnn.random", "example:tinycnn.wide"]
    assert rows[0]["feature_dim"] == 16 and rows[0]["origin"] == "example"
    code, out, _ = run(capsys, "list", "example:*wide")
    lines = out.strip().splitlines()
    assert lines[0].split("\t")[:3] == ["id", "family", "modality"]
    assert lines[1].startswith("example:tinycnn.wide\ttinycnn\timage")


def test_filters_compose_on_cli(capsys, example_plugin):
    code, out, _ = run(capsys, "list", "--source", "example", "--max-params", "2k", "--json")
    assert [r["id"] for r in json.loads(out)] == ["example:tinycnn.random"]
    code, out, _ = run(capsys, "list", "--modality", "text", "--source", "example", "--json")
    assert json.loads(out) == []


def test_rich_table_on_terminal(capsys, example_plugin, monkeypatch):
    monkeypatch.setattr(cli, "_is_tty", lambda: True)
    monkeypatch.setenv("COLUMNS", "120")
    code, out, _ = run(capsys, "list", "--source", "example")
    assert code == 0
    assert "2 models" in out and "┃" in out and "example:tinycnn.wide" in out
    assert max(len(line) for line in out.splitlines()) <= 120


def test_info_and_search(capsys, example_plugin):
    code, out, _ = run(capsys, "info", "example:tinycnn.wide", "--json")
    data = json.loads(out)
    assert data["params"] == 2640 and data["source_state"] == "ok"
    code, out, _ = run(capsys, "search", "toy", "cnn", "--json")
    assert {r["id"] for r in json.loads(out)} == {"example:tinycnn.random", "example:tinycnn.wide"}
    code, out, err = run(capsys, "search", "qwertyuiop")
    assert code == 0 and "No model matches" in err


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["info", "example:tinycnn.rando"], "Unknown model 'example:tinycnn.rando'. Did you mean: example:tinycnn.random"),
        (["info", "tinycnn"], "Malformed model id 'tinycnn': the source is missing"),
        (["info", "exampel:tinycnn.random"], "Unknown source 'exampel'. Did you mean: example? Valid sources:"),
        (["list", "--modality", "imgae"], "Unknown modality 'imgae'. Did you mean: image?"),
        (["list", "--family", "tinycn"], "Unknown family 'tinycn'. Did you mean: tinycnn?"),
        (["list", "--max-params", "lots"], "Unknown count 'lots'"),
        (["list", "exampel:tiny*"], "Unknown source 'exampel'. Did you mean: example?"),  # a typo in a pattern's source
        (["predict", "runs/nothing-here", "x.png"], "runs/nothing-here: no such run folder, and not a model id"),
        (["recommend", "--samples", "100", "--classes", "10", "--smallest-class", "500"], "smallest class 500: with 100 samples in 10 classes it is between 1 and 10"),
        (["recommend", "--samples", "100", "--classes", "10", "--time-budget", "0"], "time budget 0 s: give a positive duration"),
        (["recommend", "--samples", "100", "--classes", "10", "--time-budget=-5m"], "time budget -300 s"),
        (["recommend", "--samples", "100", "--classes", "10", "--max-params", "0"], "max params 0: give a positive count"),
        (["recommend", "--samples", "100", "--classes", "10", "--plot", "picture.txt"], "cannot draw a .txt; name it .png"),
        (["recommend", "--data", "anywhere", "--candidates", ","], "names no backbone"),
        (["pull"], "zoo pull needs ids or --lock zoo.lock; see `zoo pull --help`."),
        (["cache", "import", "."], "say which model it holds with --as ID; see `zoo cache import --help`."),
    ],
)
def test_bad_input_one_line_exit_2(capsys, example_plugin, argv, fragment):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("zoo: error: ")
    assert fragment in err


def test_cache_import_as_names_a_missing_folder(capsys, tmp_path):
    """A mistyped folder with --as is called missing, not a bundle tar; a tar with --as is refused."""
    code, out, err = run(capsys, "cache", "import", str(tmp_path / "my-bret"), "--as", "hf:org/my-bert")
    assert code == 2 and err.count("\n") == 1 and "my-bret: no such folder" in err, err
    tar = tmp_path / "models.tar"
    tar.write_bytes(b"")
    code, out, err = run(capsys, "cache", "import", str(tar), "--as", "hf:org/my-bert")
    assert code == 2 and err.count("\n") == 1 and "not to a bundle tar; see `zoo cache import --help`." in err, err


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["list", "--limit", "-1"], "argument --limit: -1 is below 0 (0: no limit); see `zoo list --help`."),
        (["list", "--min-top1", "abc"], "argument --min-top1: invalid float value: 'abc'"),
        (["list", "--max-params", "-5M"], "goes as --option=VALUE"),
        (["predict", "example:tinycnn.random", "x.png", "--top-k", "0"], "argument --top-k: 0 is below 1"),
        (["recommend", "--samples", "0", "--classes", "10"], "argument --samples: 0 is below 1"),
        (["recommend", "--data", "d", "--max-samples", "-5"], "argument --max-samples: -5 is below 1"),
        (["recommend", "--samples", "10", "--classes", "2", "--image-size", "-8"], "argument --image-size: -8 is below 1"),
    ],
)
def test_option_errors_are_one_line_without_the_usage_block(capsys, example_plugin, argv, fragment):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("zoo: error: ") and err.count("\n") == 1 and "usage:" not in err
    assert fragment in err


def test_limit_zero_lists_all_and_a_limit_keeps_that_many(capsys, example_plugin):
    _, out, _ = run(capsys, "list", "--source", "example", "--limit", "0", "--json")
    assert len(json.loads(out)) == 2
    _, out, _ = run(capsys, "list", "--source", "example", "--limit", "1", "--json")
    assert [r["id"] for r in json.loads(out)] == ["example:tinycnn.random"]


def test_paths_that_cannot_be_written_are_one_line_and_leave_nothing(capsys, example_plugin, tmp_path, monkeypatch):
    plan = ["recommend", "--samples", "100", "--classes", "10"]
    folder = tmp_path / "plans"
    folder.mkdir()
    code, _, err = run(capsys, *plan, "-o", str(folder))  # an existing folder
    assert code == 2 and err.count("\n") == 1 and f"{folder} is a folder; give a file name" in err
    assert list(folder.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary left
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    code, _, err = run(capsys, *plan, "-o", str(blocker / "plan.yaml"))  # under a file: the folder cannot be made
    assert code == 2 and err.count("\n") == 1 and "check the path and its permissions" in err and str(blocker) in err
    # ZOO_HOME that is a file: the cache cannot be read, and the line says which variable to fix
    monkeypatch.setenv("ZOO_HOME", str(blocker))
    code, _, err = run(capsys, "cache", "ls")
    assert code == 2 and err.count("\n") == 1 and "point ZOO_HOME at a writable folder" in err


def test_predict_on_an_encoder_without_a_head_and_on_a_folder(capsys, example_plugin, tmp_path, monkeypatch):
    from zoo.backbone import Backbone
    from zoo.errors import NoHeadError

    assert issubclass(NoHeadError, NotImplementedError)  # what Backbone.predict raised before, so callers keep working
    monkeypatch.setattr(type(zoo.load("example:tinycnn.random")), "predict", Backbone.predict)
    img = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(img)
    code, _, err = run(capsys, "predict", "example:tinycnn.random", str(img))
    assert code == 2 and err.count("\n") == 1 and "has no pre-training head" in err and "zoo run plan.yaml" in err
    code, _, err = run(capsys, "predict", "example:tinycnn.random", str(tmp_path))
    assert code == 2 and f"{tmp_path} is a folder, not an image file" in err


def test_debug_shows_traceback(capsys, example_plugin, monkeypatch):
    monkeypatch.setenv("ZOO_DEBUG", "1")
    with pytest.raises(zoo.errors.UnknownModelError):
        cli.main(["info", "example:nope.x"])


def test_predict_names_bad_file(capsys, example_plugin, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    code, _, err = run(capsys, "predict", "example:tinycnn.random", str(bad))
    assert code == 2 and f"{bad}: not a readable image" in err
    code, _, err = run(capsys, "predict", "example:tinycnn.random", str(tmp_path / "missing.jpg"))
    assert code == 2 and "no such image file" in err


def test_predict_checks_the_images_before_the_model_loads(capsys, example_plugin, tmp_path, monkeypatch):
    """A mistyped image path fails in one line before a model loads (which takes seconds, or a download)."""
    def no_load(*a, **k):
        raise AssertionError("the model was loaded before the inputs were checked")

    monkeypatch.setattr(zoo, "load", no_load)
    code, _, err = run(capsys, "predict", "example:tinycnn.random", str(tmp_path / "missing.jpg"))
    assert code == 2 and err.count("\n") == 1 and "no such image file" in err
    run_dir = tmp_path / "run"  # a run folder whose config says image: its model is not rebuilt either
    (run_dir / "model").mkdir(parents=True)
    (run_dir / "model" / "config.json").write_text(json.dumps({"modality": "image"}))
    monkeypatch.setattr("zoo.runner.predict.load_run", no_load)
    code, _, err = run(capsys, "predict", str(run_dir), str(tmp_path / "missing.jpg"))
    assert code == 2 and err.count("\n") == 1 and "no such image file" in err


def test_help_and_version():
    out = subprocess.run([sys.executable, "-m", "zoo", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for command in ("list", "search", "info", "plugins", "catalog", "predict"):
        assert command in out.stdout
    out = subprocess.run([sys.executable, "-m", "zoo", "--version"], capture_output=True, text=True)
    assert out.stdout.strip() == f"zoo {zoo.__version__}"


class CommandPlugin:
    @zoo.hookimpl
    def zoo_register_commands(self, cli):
        p = cli.add_parser("hello", help="say hello")
        p.add_argument("name")
        p.set_defaults(func=lambda args: print(f"hello {args.name}") or 0)


class BrokenCommandPlugin:
    @zoo.hookimpl
    def zoo_register_commands(self, cli):
        raise RuntimeError("cannot add commands")


def test_plugin_commands(capsys):
    zoo.reset(extra_plugins={"greeter": CommandPlugin(), "broken_cmds": BrokenCommandPlugin()})
    code, out, err = run(capsys, "hello", "world")
    assert code == 0 and out == "hello world\n"
    assert "plugin 'broken_cmds' failed to add its commands" in err
    code, out, _ = run(capsys, "list", "--json")
    assert code == 0


class ZooErrorCommandPlugin:
    @zoo.hookimpl
    def zoo_register_commands(self, cli):
        from zoo.errors import InvalidInputError

        raise InvalidInputError("config file ~/.mycorp.toml is missing")


class CrashingCommandPlugin:
    @zoo.hookimpl
    def zoo_register_commands(self, cli):
        p = cli.add_parser("crashy", help="a command with a bug")
        p.set_defaults(func=lambda args: {}["x"])


class HangingCommandPlugin:
    def __init__(self, release):
        self.release = release

    @zoo.hookimpl
    def zoo_register_commands(self, cli):
        self.release.wait(60)


def test_hanging_plugin_commands_time_out(capsys, monkeypatch):
    """A zoo_register_commands that never returns is given ZOO_PLUGIN_TIMEOUT seconds (it hung `zoo --help`)."""
    import threading
    import time

    release = threading.Event()
    monkeypatch.setenv("ZOO_PLUGIN_TIMEOUT", "0.5")
    zoo.reset(extra_plugins={"stuck": HangingCommandPlugin(release)})
    try:
        t0 = time.perf_counter()
        code, out, err = run(capsys, "list", "--source", "torchvision", "--limit", "1", "--json")
        assert code == 0 and time.perf_counter() - t0 < 30
        assert "plugin 'stuck' failed to add its commands (zoo_register_commands took longer than 0.5s" in err
    finally:
        release.set()
        zoo.reset()


def test_broken_plugin_commands_do_not_take_the_cli_down(capsys, monkeypatch):
    """A plugin raising a ZooError while adding commands is a warning naming it, not an error for every
    command; a plugin command that crashes is one line naming the plugin, not a traceback."""
    monkeypatch.delenv("ZOO_DEBUG", raising=False)
    zoo.reset(extra_plugins={"cfgerr": ZooErrorCommandPlugin(), "crashy": CrashingCommandPlugin()})
    code, out, err = run(capsys, "list", "--json")
    assert code == 0, err
    assert err.count("\n") == 1 and "plugin 'cfgerr' failed to add its commands" in err and "ZOO_DISABLE_PLUGINS=cfgerr" in err
    code, out, err = run(capsys, "crashy")
    assert code == 1 and "Traceback" not in err
    lines = [line for line in err.splitlines() if "cfgerr" not in line]
    assert len(lines) == 1 and "command 'crashy' of plugin 'crashy' failed: KeyError" in lines[0] and "ZOO_DISABLE_PLUGINS=crashy" in lines[0]
    zoo.reset()


def test_full_catalog_lists_every_source_and_filters_compose():
    """With every built-in plugin installed: >= 1,500 entries from all five sources."""
    out = subprocess.run([sys.executable, "-m", "zoo", "list", "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert len(rows) >= 1500
    assert {r["id"].split(":")[0] for r in rows} >= {"torchvision", "timm", "keras", "tfhub", "hf"}
    out = subprocess.run([sys.executable, "-m", "zoo", "list", "--modality", "text", "--family", "bert", "--json"], capture_output=True, text=True)
    bert = json.loads(out.stdout)
    assert bert and all(r["modality"] == "text" and r["family"] == "bert" for r in bert)
    assert "hf:google-bert/bert-base-uncased" in {r["id"] for r in bert}
    statuses = {p.name: p.state for p in zoo.plugins()}
    assert all(statuses.get(n) == "ok" for n in ("torchvision", "timm", "keras", "tfhub", "hf", "pypi_weights")), statuses


def test_pull_and_offline_error_name_the_remedy(capsys, example_plugin, monkeypatch, zoo_home):
    code, out, _ = run(capsys, "pull", "example:tinycnn.random")
    assert code == 0 and out.startswith("example:tinycnn.random: ready")
    # a real source, offline and not cached: one line naming the model, the cache path and `zoo pull`
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    zoo.reset()
    code, _, err = run(capsys, "pull", "torchvision:resnet18.IMAGENET1K_V1")
    assert code == 2 and err.count("\n") == 1
    assert "torchvision:resnet18.IMAGENET1K_V1 is not cached at " in err
    assert str(zoo_home.parent) in err and "run `zoo pull torchvision:resnet18.IMAGENET1K_V1`" in err


def test_predict_with_packaged_weights_offline(tmp_path, zoo_home):
    """`zoo predict` on the embedded default, offline, in a fresh process with an empty ZOO_HOME."""
    import os

    from PIL import Image
    from skimage import data

    files = []
    for name in ("chelsea", "coffee"):
        files.append(tmp_path / f"{name}.png")
        Image.fromarray(getattr(data, name)()).save(files[-1])
    env = dict(os.environ, ZOO_OFFLINE="1", HF_HUB_OFFLINE="1")
    out = subprocess.run(
        [sys.executable, "-m", "zoo", "predict", "timm:efficientnet_lite0.pypi_in1k", *map(str, files), "--json"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    cat, coffee = json.loads(out.stdout)
    assert coffee["top"][0]["label"] == "espresso"
    cats = {"tabby, tabby cat", "tiger cat", "Egyptian cat"}
    assert cat["top"][0]["label"] in cats and "tabby, tabby cat" in {t["label"] for t in cat["top"][:3]}
    assert len(cat["top"]) == 5


def test_plain_table_keeps_one_line_per_row_when_a_cell_holds_tabs_or_line_breaks(capsys):
    """`zoo predict RUN 'two\\nlines'` (not a terminal): the text's line break split its row in two."""
    cli._table(None, ["input", "rank"], [["first line\nsecond\tcell", 1], ["plain", 2]])
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["input\trank", "first line\\nsecond\\tcell\t1", "plain\t2"]


def test_predict_help_documents_its_inputs_and_output(capsys):
    with pytest.raises(SystemExit):
        cli.main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for words in ("input, rank, label, score", "tab-separated", "--json: a list of {input, top:", "labels per input (default 5", "texts themselves"):
        assert words in text, words


def test_the_zoo_command_prints_zoos_warnings_in_one_line_once_per_kind():
    """`zoo run` on long texts printed "N text(s) longer than ..." as file:line + source line, once per distinct N."""
    code = (
        "import warnings, zoo\n"
        "from zoo import cli\n"
        "cli._one_line_warnings()\n"
        "for n in (3, 7, 12):\n"
        "    warnings.warn_explicit(f'hf:x: {n} text(s) longer than\\nthe limit were truncated.', UserWarning, zoo.__file__, 1)\n"
        "warnings.warn_explicit('a library warning', UserWarning, '/elsewhere/lib.py', 9)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    assert lines[0] == "zoo: warning: hf:x: 3 text(s) longer than the limit were truncated."
    assert lines[1] == "/elsewhere/lib.py:9: UserWarning: a library warning" and len(lines) == 2


def test_ctrl_c_while_torch_is_imported_is_one_line(capsys, monkeypatch):
    """A Ctrl-C that stops `import torch` (the first seconds of `zoo run`) leaves torch half-imported: cmd_run's cleanup
    (distributed.release) imported torch.distributed again and printed two tracebacks ending in an ImportError, rc 1."""
    import zoo.runner

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(zoo.runner, "run", interrupted)
    monkeypatch.setitem(sys.modules, "torch.distributed", None)  # as a half-done `import torch` leaves it: importing it fails
    code, out, err = run(capsys, "run", "plan.yaml", "--data", "d", "--out", "runs/a")
    assert code == 130 and out == "" and err.startswith("zoo: interrupted") and err.count("\n") == 1, err


def test_ctrl_c_in_zoo_run_gives_the_whole_resume_command(capsys, monkeypatch, tmp_path):
    """A resume must repeat --epochs, --batch-size, --seed and --val-frac (data.json refuses others): the hint
    repeats the command as typed, with --resume (and --out when none was given: the folder the run chose)."""
    import zoo.runner

    def interrupted(*args, out=None, **kwargs):  # a run interrupted after it wrote its folder's plan.yaml
        folder = Path(out or "runs/efficientnet_lite0.pypi_in1k-20260101-000000")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "plan.yaml").write_text("")
        exc = KeyboardInterrupt()
        exc.zoo_run_dir = str(folder)  # as zoo.runner.pipeline.run sets it
        raise exc

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(zoo.runner, "run", interrupted)
    code, _, err = run(capsys, "run", "plan.yaml", "--data", "my data", "--out", "runs/a", "--epochs", "40", "--seed", "3")
    assert code == 130 and err.count("\n") == 1
    assert err.endswith("resume with `zoo run plan.yaml --data 'my data' --out runs/a --epochs 40 --seed 3 --resume`\n"), err
    code, _, err = run(capsys, "run", "plan.yaml", "--data", "d", "--batch-size", "8")
    assert code == 130 and err.endswith("--batch-size 8 --resume --out runs/efficientnet_lite0.pypi_in1k-20260101-000000`\n"), err


def test_ctrl_c_before_zoo_run_wrote_its_folder_does_not_advise_resume(capsys, monkeypatch, tmp_path):
    """Ctrl-C while the data is read or the model loads (before plan.yaml): the hint said "resume with ... --resume",
    which then answered "nothing to resume (no run there)"; and without --out it named no folder."""
    from zoo.runner import pipeline

    monkeypatch.chdir(tmp_path)
    zoo.recommend(samples=200, classes=10, domain="documents", image_size=8).write("plan.yaml")
    (tmp_path / "d").mkdir()

    def reading(data):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "_dataset", reading)
    code, _, err = run(capsys, "run", "plan.yaml", "--data", "d", "--out", "runs/a")
    assert code == 130 and err == "zoo: interrupted; nothing to resume in runs/a yet (the run had not started): run the same command again\n", err

    def started(plan, data, out, *rest):  # interrupted once the folder is written, in the folder the run chose
        pipeline.start_folder(out, plan, {})
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "_run_in", started)
    code, _, err = run(capsys, "run", "plan.yaml", "--data", "d", "--seed", "2")
    folder = next(Path("runs").glob("*-*"))
    # no epoch had finished: the hint said "the last finished epoch is kept"
    assert code == 130 and err == f"zoo: interrupted; stopped before its first checkpoint: resume with `zoo run plan.yaml --data d --seed 2 --resume --out {folder}`\n", err
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "LATEST").write_text("epoch-0001")
    monkeypatch.setattr(pipeline, "_run_in", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    code, _, err = run(capsys, "run", "plan.yaml", "--data", "d", "--seed", "2", "--out", str(folder), "--resume")
    assert code == 130 and err == f"zoo: interrupted; the last finished epoch is kept: resume with `zoo run plan.yaml --data d --seed 2 --out {folder} --resume`\n", err


def test_sigterm_to_zoo_run_unwinds_like_ctrl_c_and_gives_the_resume_command(tmp_path):
    """A scheduler's SIGTERM (preemption, `kill`) killed `zoo run` on the spot: no message, no finally block run (a
    file being written was left for the next run to clean). Now it unwinds as Ctrl-C does: one line with the resume
    command, exit 143."""
    import signal
    import time

    script = tmp_path / "fake_zoo.py"
    script.write_text(
        "import sys, time\n"
        "from pathlib import Path\n"
        "import zoo.runner\n"
        "from zoo.cli import main\n"
        "def run(*args, out=None, **kwargs):\n"
        "    Path(out).mkdir(parents=True)\n"
        "    (Path(out) / 'plan.yaml').write_text('')\n"
        "    try:\n"
        "        (Path(out) / 'started').write_text('')\n"
        "        time.sleep(60)\n"
        "    finally:\n"
        "        (Path(out) / 'cleaned-up').write_text('')\n"
        "zoo.runner.run = run\n"
        "sys.argv = ['zoo', 'run', 'plan.yaml', '--data', 'd', '--out', sys.argv[1]]\n"
        "sys.exit(main())\n"
    )
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(script), str(out)], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out / "started").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err == f"zoo: terminated; stopped before its first checkpoint: resume with `zoo run plan.yaml --data d --out {out} --resume`\n", err
    assert (out / "cleaned-up").exists()
