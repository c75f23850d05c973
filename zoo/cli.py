"""The ``zoo`` command line. Thin: parse, call the Python API, print.

Rich tables on a terminal, plain tab-separated text when piped, ``--json`` for scripts. Known
errors print one line and exit 2; ``ZOO_DEBUG=1`` shows the traceback. Heavy imports live inside
the command bodies.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from zoo import __version__, _cli_cache, _cli_run, constants

EXIT_USAGE = 2


# ---- output helpers ---------------------------------------------------------------------------


def _is_tty() -> bool:
    return sys.stdout.isatty()


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(_fmt(v) for v in value)
    return str(value)


def _human(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)


def _table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    if _is_tty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, header_style="bold")
        for col in columns:
            table.add_column(col, overflow="fold")
        for row in rows:
            table.add_row(*[_fmt(v) for v in row])
        Console().print(table)
    else:
        out = sys.stdout
        out.write("\t".join(columns) + "\n")
        for row in rows:  # one line per row, one tab between cells: a cell's own tabs and line breaks are escaped
            out.write("\t".join(_fmt(v).replace("\t", "\\t").replace("\r", "\\r").replace("\n", "\\n") for v in row) + "\n")


# ---- commands ---------------------------------------------------------------------------------


def _card_row(c: Any) -> list[Any]:
    return [c.id, c.family, c.modality, _human(c.params), c.gflops, c.top1, c.input_size, c.feature_dim]


CARD_COLUMNS = ["id", "family", "modality", "params", "gflops", "top1", "input", "features"]


def cmd_list(args: argparse.Namespace) -> int:
    import zoo

    cards = zoo.list_models(
        args.pattern,
        source=args.source,
        modality=args.modality,
        task=args.task,
        family=args.family,
        max_params=args.max_params,
        max_gflops=args.max_gflops,
        min_top1=args.min_top1,
        curated_only=args.curated,
    )
    if args.limit:
        cards = cards[: args.limit]
    if args.json:
        _print_json([c.summary() for c in cards])
    else:
        _table(f"{len(cards)} models", CARD_COLUMNS, [_card_row(c) for c in cards])
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    import zoo

    cards = zoo.search(" ".join(args.text), limit=args.limit)
    if args.json:
        _print_json([c.summary() for c in cards])
    elif not cards:
        print(f"No model matches {' '.join(args.text)!r}; try fewer words or `zoo list`.", file=sys.stderr)
    else:
        _table(None, CARD_COLUMNS, [_card_row(c) for c in cards])
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import zoo

    card = zoo.info(args.id)
    data = card.summary()
    src = zoo.sources().get(card.source, {})
    data["source_state"] = src.get("state")
    data["install"] = src.get("install")
    if args.json:
        _print_json(data)
    else:
        _table(card.id, ["field", "value"], [[k, v] for k, v in data.items()])
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    import zoo

    statuses = zoo.plugins()
    if args.json:
        _print_json([s.as_dict() for s in statuses])
    else:
        rows = [
            [s.name, s.dist, s.version, s.state, ",".join(s.sources), s.models, s.reason or s.install]
            for s in statuses
        ]
        _table("plugins (entry point group 'zoo')", ["name", "package", "version", "state", "sources", "models", "reason / install"], rows)
    return 0


def cmd_catalog_validate(args: argparse.Namespace) -> int:
    from zoo.catalog import REGISTRY_PATH, read_registry
    from zoo.errors import CatalogError

    path = args.path or REGISTRY_PATH
    try:
        reg = read_registry(path)
    except CatalogError as exc:
        if isinstance(exc.__cause__, OSError):  # no file to validate: one line, no "fields named above"
            from zoo.errors import InvalidInputError

            raise InvalidInputError(f"{exc.problems[0]}; pass a registry.yaml file (or nothing, for the installed one).") from None
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"zoo: error: {len(exc.problems)} problem(s) in {path}; fix the fields named above.", file=sys.stderr)
        return EXIT_USAGE
    print(f"{path}: {len(reg.models)} entries, {len(reg.sources)} sources, valid")
    return 0


def _fetched_for_predict(model_id: Any) -> bool:
    """Fetch the files ``predict`` needs that the source's loader left out (:func:`zoo._cli_cache.fetch_for_predict`);
    a failed download is a warning: the model still predicts with what it has (classes by index, or no head)."""
    from zoo._cli_cache import fetch_for_predict
    from zoo.errors import ZooError

    try:
        return bool(fetch_for_predict(model_id))
    except (ZooError, OSError) as exc:
        print(f"zoo: warning: {exc}", file=sys.stderr)
        return False


def cmd_predict(args: argparse.Namespace) -> int:
    import zoo
    from pathlib import Path

    from zoo.inputs import check_images
    from zoo.runner.predict import check_texts, load_run, run_modality

    inputs: list[Any] = list(args.inputs)
    is_run = Path(args.id).is_dir()
    if not is_run and ":" not in args.id:  # neither a folder nor an id (source:name): most likely a run folder's path, mistyped
        from zoo.errors import InvalidInputError

        raise InvalidInputError(f"{args.id}: no such run folder, and not a model id (source:name); pass the --out folder of "
                                "`zoo run` (relative to the current folder) or an id from `zoo list`.")
    # the inputs are checked before the model loads (seconds, or a download), when the modality is known without it
    modality = run_modality(args.id) if is_run else _catalog_modality(args.id)
    checked = modality == "image"
    if checked:
        check_images(inputs)  # fail early, naming the bad file (one image decoded at a time: predict decodes them again per batch)
    elif is_run and modality == "text":
        check_texts(inputs)  # an empty text would get a class all the same
    if is_run:  # a `zoo run` folder: its trained model, classes and preprocessing
        backbone = load_run(args.id)
        modality, name = backbone.modality, args.id
    else:
        backbone = zoo.load(args.id)
        if _fetched_for_predict(backbone.id):  # the head or class names the loader does not fetch: load again with them
            backbone = zoo.load(args.id)
        modality, name = backbone.input_spec.modality, backbone.id
    if modality == "image" and not checked:
        check_images(inputs)
    results = backbone.predict(inputs, top_k=args.top_k)
    if args.json:
        _print_json([{"input": str(i), "top": [{"label": l, "score": s} for l, s in r]} for i, r in zip(inputs, results)])
    else:
        rows = [[str(inp), k + 1, lab, f"{sc:.4f}"] for inp, res in zip(inputs, results) for k, (lab, sc) in enumerate(res)]
        _table(f"{name}: top {args.top_k}", ["input", "rank", "label", "score"], rows)
    return 0


def _catalog_modality(model_id: str) -> str | None:
    """The catalog's modality for ``model_id``, or None where the catalog does not know it (no framework loads)."""
    from zoo._api import catalog_modality

    try:
        return catalog_modality(model_id)
    except Exception:  # noqa: BLE001 - an id the catalog does not hold may still load; zoo.load says what is wrong
        return None


def cmd_recommend(args: argparse.Namespace) -> int:
    from zoo.recommender import recommend

    plan = recommend(
        samples=args.samples,
        classes=args.classes,
        data=args.data,
        candidates=args.candidates,
        priority=args.priority,
        max_samples=args.max_samples,
        rank_samples=args.rank_samples,
        resolution=args.resolution,
        plot=args.plot,
        modality=args.modality,
        similarity=args.similarity,
        domain=args.domain,
        shift=args.shift,
        device=args.device,
        time_budget=args.time_budget,
        max_params=args.max_params,
        smallest_class=args.smallest_class,
        image_size=args.image_size,
    )
    if args.output:
        plan.write(args.output)
    if args.json:
        sys.stdout.write(plan.model_dump_json(indent=2) + "\n")
        return 0
    cost = plan.expected_cost
    rows = [
        ["backbone", plan.backbone],
        ["strategy", plan.strategy],
        ["unfreeze", ", ".join(plan.unfreeze) or "(none: head only)"],
        ["learning rates", ", ".join(f"{k}={v:.2g}" for k, v in plan.lr.items())],
        ["optimizer", f"{plan.optimizer.name}" + (f" momentum={plan.optimizer.momentum}" if plan.optimizer.momentum else "")],
        ["schedule", f"{plan.schedule.epochs} epochs, batch {plan.schedule.batch_size}, warm-up {plan.schedule.warmup_frac:.0%}, {plan.schedule.decay}"],
        ["augmentation", ", ".join(k for k, v in plan.augment.model_dump().items() if v is True) or "none"],
        ["batchnorm", plan.bn],
        ["resolution", plan.resolution],
        ["expected cost", f"{cost.total_seconds / 60:.1f} min on {cost.device}"],
    ]
    if plan.signals.get("mode") == "data":
        d = plan.signals["data"]
        rows.append(["data", f"{d['samples']} items, {d['classes']} classes, smallest {d['smallest_class']}, {d['skipped_unreadable']} {d.get('skipped_what', 'unreadable file(s)')} skipped"])
        for name, sig in plan.signals["candidates"].items():
            rows.append([name, f"rank {sig['mean_rank']:.2f}  LogME {sig['logme']:.3f}  k-NN {sig['knn_acc']:.3f}  probe {sig['lp_acc']:.3f}" + (f"  MSP {sig['msp']:.3f}" if sig.get("msp") is not None else "")])
        rows.append(["features", plan.features])
    _table(f"plan ({plan.signals['regime']} data, {plan.signals['similarity']} similarity)", ["", ""], rows)
    for r in plan.rationale:
        print(f"- {r.text}  [{r.source}]")
    if args.output:
        print(f"plan written to {args.output}")
    if args.plot:
        print(f"picture written to {args.plot}")
    return 0


# ---- parser -----------------------------------------------------------------------------------


def _add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON (for scripts)")


class _Parser(argparse.ArgumentParser):
    """argparse with zoo's one-line errors: ``zoo: error: <what>`` and where the help is, no usage block."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        if "expected one argument" in message:
            message += " (a value that starts with '-' goes as --option=VALUE)"
        self.exit(EXIT_USAGE, f"zoo: error: {message}; see `{self.prog} --help`.\n")


def _at_least(minimum: int, meaning: str = "") -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum`` (``meaning`` explains the smallest value, e.g. 0: no limit)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}{f' ({meaning})' if meaning else ''}")
        return value

    parse.__name__ = "integer"
    return parse


def build_parser(plugin_commands: bool = True) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="zoo",
        description="One front door to every pretrained backbone (torchvision, timm, Keras, TF Hub, Hugging Face).",
        epilog="Ids look like source:name[.tag][@revision], e.g. timm:resnet50.a1_in1k. ZOO_DEBUG=1 shows tracebacks.",
    )
    parser.add_argument("--version", action="version", version=f"zoo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("list", help="list catalog entries, filtered")
    p.add_argument("pattern", nargs="?", help="glob on the id, e.g. 'timm:resnet*' (a plain word matches anywhere)")
    p.add_argument("--source", help="torchvision, timm, keras, tfhub, hf, or a plugin's source")
    p.add_argument("--modality", help="image or text")
    p.add_argument("--task", help="e.g. image-classification, fill-mask, text-generation")
    p.add_argument("--family", help="e.g. resnet, efficientnet, bert, gpt2")
    p.add_argument("--max-params", help="e.g. 10M, 1.5B")
    p.add_argument("--max-gflops", type=float)
    p.add_argument("--min-top1", type=float, help="minimum top-1 accuracy in percent")
    p.add_argument("--curated", action="store_true", help="only the curated registry.yaml entries")
    p.add_argument("--limit", type=_at_least(0, "0: no limit"), help="show at most this many (default and 0: all)")
    _add_json(p)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("search", help="search ids, families and descriptions")
    p.add_argument("text", nargs="+")
    p.add_argument("--limit", type=_at_least(0, "0: no limit"), default=20, help="show at most this many (default 20; 0: all)")
    _add_json(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("info", help="show one model's card")
    p.add_argument("id")
    _add_json(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("plugins", help="installed plugins and their state (ok, unavailable, failed, disabled)")
    _add_json(p)
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("catalog", help="catalog tools")
    csub = p.add_subparsers(dest="catalog_command", metavar="ACTION", required=True)
    v = csub.add_parser("validate", help="validate a registry.yaml (default: the installed one)")
    v.add_argument("path", nargs="?")
    v.set_defaults(func=cmd_catalog_validate)

    p = sub.add_parser(
        "predict", help="top-k labels from a backbone's pre-training head or a `zoo run` folder's model",
        epilog="Output: one row per input and rank (input, rank, label, score: the softmax probability), most likely first; "
        "a table on a terminal, tab-separated lines otherwise (a tab or line break inside a cell written as \\t or \\n). "
        "--json: a list of {input, top: [{label, score}, ...]}.",
    )
    p.add_argument("id", help="model id, or a run folder (zoo run --out)")
    p.add_argument("inputs", nargs="+", metavar="FILE_OR_TEXT", help="image files for an image model (the shell expands globs), the texts themselves for a text model")
    p.add_argument("--top-k", type=_at_least(1), default=5, help="labels per input (default 5; at most the model's number of classes)")
    _add_json(p)
    p.set_defaults(func=cmd_predict)

    _cli_cache.add_commands(sub)
    _cli_run.add_commands(sub)

    p = sub.add_parser("recommend", help="recommend feature extraction or fine-tuning depth, backbone, LRs and schedule")
    p.add_argument("--data", metavar="PATH", help="measure a dataset: an image folder (one sub-folder per class) or a CSV/JSONL of text and label")
    p.add_argument("--candidates", metavar="ID,ID,...", help="backbones to measure in data mode (default: those available offline of the packaged EfficientNet-Lite0/1/2, or MiniLM for text)")
    p.add_argument("--max-samples", type=_at_least(1), default=2000, help="stratified sample size for the signals (data mode)")
    p.add_argument("--rank-samples", type=_at_least(0), help="rank several candidates on a sub-sample of about this many items (data mode; default 300, 0: all)")
    p.add_argument("--resolution", type=int, metavar="PX", help="images: train (and measure, in data mode) at this side instead of the rule's (128 for small images; else native up to 224 on a CPU, or in data mode the side measured at: 160 on a CPU)")
    p.add_argument("--samples", type=_at_least(1), help="number of labelled training examples (metadata mode)")
    p.add_argument("--classes", type=_at_least(2), help="number of classes (metadata mode)")
    p.add_argument("--smallest-class", type=_at_least(1), help="examples in the smallest class")
    p.add_argument("--modality", default="image", help="image or text")
    p.add_argument("--similarity", help="high, medium, low or a number in [0, 1] (data mode measures it)")
    p.add_argument("--priority", default="balanced", help="balanced, accuracy or cost")
    p.add_argument("--domain", help="natural, fine-grained, medical, satellite, documents or synthetic")
    p.add_argument("--shift", help="how the task differs from the pretraining data: input (corrupted or recoloured images: planned as a different domain), feature (new sub-populations: the middle groups) or label (same inputs, new label semantics: the head only)")
    p.add_argument("--device", default="cpu", help="cpu or gpu")
    p.add_argument("--time-budget", help="e.g. 30m, 2h")
    p.add_argument("--max-params", help="e.g. 10M")
    p.add_argument("--image-size", type=_at_least(1), help="typical image side in pixels")
    p.add_argument("-o", "--output", help="write the plan (plan.yaml or plan.json)")
    p.add_argument("--plot", metavar="FILE", help="draw the size x similarity plane (and, with --data, the probe profile and scores)")
    _add_json(p)
    p.set_defaults(func=cmd_recommend)

    if plugin_commands:
        from zoo._api import _get
        from zoo._plugins import _run_with_timeout, _TimedOut

        host = _get(with_models=False).host  # an invalid catalog raises here: one line from main()
        PLUGIN_COMMANDS.clear()
        for impl in host.pm.hook.zoo_register_commands.get_hookimpls():
            st = host.statuses.get(impl.plugin_name)
            if st is not None and st.state == "failed":  # a failed plugin keeps nothing: `zoo plugins` says why
                continue
            before = set(sub.choices)
            try:  # on a worker thread with ZOO_PLUGIN_TIMEOUT, like the other registration hooks (it prints to stderr)
                _run_with_timeout(lambda: impl.function(cli=sub), host.timeout, f"zoo-plugin-{impl.plugin_name}")
            except _TimedOut:
                print(f"zoo: warning: plugin {impl.plugin_name!r} failed to add its commands (zoo_register_commands took longer "
                      f"than {host.timeout:g}s, ZOO_PLUGIN_TIMEOUT); fix it, or disable it with ZOO_DISABLE_PLUGINS={impl.plugin_name}",
                      file=sys.stderr)
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - a broken plugin (a ZooError, sys.exit) must not break the CLI
                if constants.debug():
                    raise
                print(f"zoo: warning: plugin {impl.plugin_name!r} failed to add its commands ({exc}); fix it, or disable it "
                      f"with ZOO_DISABLE_PLUGINS={impl.plugin_name}", file=sys.stderr)
            for name in set(sub.choices) - before:
                PLUGIN_COMMANDS[name] = impl.plugin_name
    return parser


#: Sub-commands added by plugins (``zoo_register_commands``): command name -> plugin name.
PLUGIN_COMMANDS: dict[str, str] = {}


def _resume_command(args: argparse.Namespace, run_dir: str | None = None) -> str:
    """The interrupted `zoo run` command with --resume (and --out) added: a resume must repeat its epochs, batch
    size, seed and held-out fraction (data.json checks them), so the hint repeats every option as typed."""
    import shlex

    argv = list(getattr(args, "argv", None) or [])
    cmd = shlex.join(["zoo", *argv]) if argv else "zoo run PLAN --data DATA"
    if "--resume" not in argv:
        cmd += " --resume"
    if not args.out:
        cmd += f" --out {shlex.quote(run_dir) if run_dir else 'RUN_DIR'}"
    return cmd


class Terminated(KeyboardInterrupt):
    """SIGTERM to the `zoo` command (a scheduler's preemption, `kill`): unwound like Ctrl-C, so that what is being
    written is removed by its ``finally`` blocks and ``zoo run`` prints its resume command (exit 143, not a silent death)."""


def _on_sigterm(signum: int, frame: Any) -> NoReturn:
    raise Terminated


def _interrupted_run(args: argparse.Namespace, exc: KeyboardInterrupt) -> str:
    """What follows `zoo: interrupted` for `zoo run`: the resume command when the run folder holds a run (its
    ``plan.yaml``, written before any result), else that there is nothing to resume (a --resume would be refused)."""
    from pathlib import Path

    run_dir = getattr(exc, "zoo_run_dir", None) or args.out  # set by zoo.runner once it chose the folder
    if run_dir is None:
        return " before the run started: run the same command again"
    if not (Path(run_dir) / "plan.yaml").is_file():
        return f"; nothing to resume in {run_dir} yet (the run had not started): run the same command again"
    if not (Path(run_dir) / "checkpoints" / "LATEST").is_file():  # stopped in stage 1 (its extracted features are kept in the cache)
        return f"; stopped before its first checkpoint: resume with `{_resume_command(args, run_dir)}`"
    return f"; the last finished epoch is kept: resume with `{_resume_command(args, run_dir)}`"


def _run(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    from zoo.errors import ZooError, exc_line

    try:
        return int(func(args) or 0)
    except ZooError as exc:
        if constants.debug():
            raise
        print(f"zoo: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        hint = _interrupted_run(args, exc) if getattr(args, "command", None) == "run" else ""
        print(f"zoo: {'terminated' if isinstance(exc, Terminated) else 'interrupted'}{hint}", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except BrokenPipeError:
        return 0
    except OSError as exc:  # a path that cannot be read or written: one line (the writers leave no partial file)
        if constants.debug():
            raise
        print(f"zoo: error: {_os_error(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        loading = getattr(exc, "zoo_loader", None)  # set by zoo.load on what a source's loader raised
        if loading and not constants.debug():
            model, owner = loading
            print(f"zoo: error: loading {model} failed in plugin {owner!r}: {exc_line(exc)}; "
                  "`zoo cache verify` checks the cached files, ZOO_DEBUG=1 shows the traceback (report it to the plugin's "
                  f"author), ZOO_DISABLE_PLUGINS={owner} turns the plugin off", file=sys.stderr)
            return 1
        plugin = PLUGIN_COMMANDS.get(getattr(args, "command", None) or "")
        if plugin is None or constants.debug():
            raise
        # a plugin's command that crashed: one line naming the plugin, not a traceback through zoo
        print(f"zoo: error: command {args.command!r} of plugin {plugin!r} failed: {exc_line(exc)}; "
              "ZOO_DEBUG=1 shows the traceback: report it to the plugin's author, "
              f"or disable the plugin with ZOO_DISABLE_PLUGINS={plugin}", file=sys.stderr)
        return 1


def _os_error(exc: OSError) -> str:
    """One line for an operating-system error on a path, saying what to check."""
    from pathlib import Path

    name = exc.filename or ""
    what = exc.strerror or type(exc).__name__
    line = f"{what}: {name}" if name else str(exc).splitlines()[0]
    home = constants.zoo_home()
    try:
        under_home = bool(name) and Path(name).resolve().is_relative_to(home.resolve())
    except (OSError, ValueError):
        under_home = False
    import errno

    if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # nothing was kept (the writers remove their temporary files)
        where = f"the disk of {Path(name).parent}" if name else "the disk"
        return f"{line}; nothing was kept: free some space on {where}, or point the folder's variable (ZOO_HOME, TORCH_HOME, " \
               "HF_HOME, KERAS_HOME, TFHUB_CACHE_DIR) or the output path elsewhere."
    if under_home:
        return f"{line}; zoo's cache folder {home} is not usable: point ZOO_HOME at a writable folder."
    return f"{line}; check the path and its permissions."


def _one_line_warnings() -> None:
    """Print the warnings zoo and its plugins raise as ``zoo: warning: ...``, one line each and once per kind.

    Python's default shows a warning as two lines (file:line, then the source line), and once per distinct
    text: a text run printed "N text(s) longer than the model's limit" once for every distinct N, 3-7 lines.
    Texts that differ only in their numbers count as one kind here. Other libraries' warnings keep their format.
    """
    import re
    import warnings
    from pathlib import Path

    home = str(Path(__file__).resolve().parent)
    default, seen = warnings.showwarning, set()

    def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        path = str(Path(filename).resolve()) if filename else ""
        if not (path.startswith(home) or f"{os.sep}zoo_" in path):
            return default(message, category, filename, lineno, file, line)
        key = (category, re.sub(r"\d+", "#", str(message)))
        if key not in seen:
            seen.add(key)
            print(f"zoo: warning: {' '.join(str(message).split())}", file=sys.stderr)

    warnings.showwarning = show


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:  # the `zoo` command (not a caller passing its own arguments, whose warnings and signals stay its own)
        _one_line_warnings()
    own_argv = argv is None  # the `zoo` command: SIGTERM unwinds the command (Terminated) while it runs
    argv = list(sys.argv[1:] if argv is None else argv)
    from zoo.errors import ZooError

    try:
        parser = build_parser(plugin_commands=True)
    except ZooError as exc:  # e.g. an invalid registry.yaml
        if constants.debug():
            raise
        print(f"zoo: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # Ctrl-C while a slow plugin is imported: say which, not a traceback through the host
        from zoo._api import _state

        slow = [t.name.removeprefix("zoo-plugin-") for t in threading.enumerate() if t.name.startswith("zoo-plugin-")]
        hint = f" while loading plugin(s) {', '.join(slow)}: ZOO_DISABLE_PLUGINS={','.join(slow)} skips them" if slow and _state is None else ""
        print(f"zoo: interrupted{hint}", file=sys.stderr)
        return 130
    args = parser.parse_args(argv)
    args.argv = argv  # as typed, for hints that repeat the command
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    if not own_argv or threading.current_thread() is not threading.main_thread():
        return _run(args.func, args)
    import signal

    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _run(args.func, args)
    finally:  # the interpreter's exit (atexit hooks: torch's, TensorFlow's) is killed by SIGTERM as before, not unwound
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
