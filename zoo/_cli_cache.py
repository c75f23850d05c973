"""``zoo pull | lock | bundle | cache``: prefetch, pin, move and check models (see :mod:`zoo.cache`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def _out() -> Any:
    from zoo import cli

    return cli


def cmd_pull(args: argparse.Namespace) -> int:
    """Download ids into their sources' caches, or exactly the files of a lock (verified)."""
    import zoo

    if not args.ids and not args.lock:
        raise _usage("zoo pull needs ids or --lock zoo.lock", "pull")
    if args.lock:
        from zoo.cache.lockfile import LockFile, pull_lock

        lock = LockFile.read(args.lock)
        pull_lock(lock, where=args.lock)
        for model in lock.models:
            print(f"{model.pinned_id}: {len(model.files)} file(s) verified against {args.lock}")
    for model_id in args.ids:
        backbone = zoo.load(model_id)  # each source downloads into its own cache (TORCH_HOME, HF_HOME, ...)
        extra = fetch_for_predict(backbone.id)
        more = f"; {len(extra)} more file(s) for `zoo predict`" if extra else ""
        print(f"{backbone.id}: ready ({backbone.framework}, {backbone.feature_dim}-d features{more})")
    return 0


def fetch_for_predict(model_id: Any) -> list[Any]:
    """Download what the source lists beyond the weights its loader fetched and ``predict`` needs (Keras' with-top
    weights and ImageNet class index), so that a later offline ``zoo predict`` has it; returns the files fetched."""
    from zoo.cache.lockfile import fetch_optional, listed_files

    found = listed_files(model_id)
    return fetch_optional(found) if found is not None else []


def _usage(text: str, command: str) -> Exception:
    from zoo.errors import InvalidInputError

    return InvalidInputError(f"{text}; see `zoo {command} --help`.")


def cmd_lock(args: argparse.Namespace) -> int:
    """Resolve ids (pulling what is missing) and write their revisions and file hashes."""
    from zoo.cache.lockfile import lock_models

    _check_output(args.output, "lock file", "zoo.lock")  # before loading (or downloading) anything
    lock = lock_models(args.ids)
    lock.write(args.output)
    n = sum(len(m.files) for m in lock.models)
    print(f"{args.output}: {len(lock.models)} model(s), {n} file(s) pinned")
    return 0


def _check_output(output: str, what: str, example: str) -> None:
    """Refuse an output path that cannot be written, before any work: a folder, or a parent that is a file.

    A missing parent folder is fine: it is made when the file is written.
    """
    import os
    from pathlib import Path

    from zoo.errors import InvalidInputError

    path = Path(output)
    if path.is_dir():
        raise InvalidInputError(f"{path} is a folder; give the {what} a file name (e.g. {path / example}).")
    parent = path.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InvalidInputError(f"{parent} is a file, so {path} cannot be written; choose another path for the {what}.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InvalidInputError(f"{parent} is not writable, so {path} cannot be written; choose another path for the {what}.")


def cmd_bundle(args: argparse.Namespace) -> int:
    """Pack a lock's files into one tar for an offline machine."""
    from zoo.cache.bundle import bundle
    from zoo.cache.lockfile import LockFile

    _check_output(args.output, "bundle", "models.tar")
    lock = LockFile.read(args.lock)
    out = bundle(lock, args.output, lock_path=args.lock)
    print(f"{out}: {len(lock.models)} model(s); on the offline machine run `zoo cache import {out.name}`")
    return 0


def cmd_cache_import(args: argparse.Namespace) -> int:
    """Install a bundle tar, or adopt a folder as one model (``--as ID``)."""
    from pathlib import Path

    from zoo.cache.bundle import import_bundle, import_dir

    path = Path(args.path)
    if path.is_dir():
        if not args.as_id:
            raise _usage(f"{path} is a folder: say which model it holds with --as ID", "cache import")
        done = import_dir(path, args.as_id)
        print(f"{args.as_id}: {len(done)} file(s) adopted from {path}" if done else f"{args.as_id}: already cached with the files of {path}; nothing to do")
        return 0
    if args.as_id:
        if not path.exists():  # a mistyped folder, not a tar
            raise _usage(f"{path}: no such folder; pass the folder that holds {args.as_id}'s files", "cache import")
        raise _usage("--as applies to a folder, not to a bundle tar", "cache import")
    lock = import_bundle(path)
    for model in lock.models:
        print(f"{model.pinned_id}: imported ({len(model.files)} file(s) verified)")
    return 0


def cmd_cache_ls(args: argparse.Namespace) -> int:
    """List the files zoo recorded."""
    from zoo.cache.verify import entries

    rows = entries()
    cli = _out()
    if args.json:
        cli._print_json(rows)
    else:
        cli._table(f"{len(rows)} file(s)", ["models", "size", "present", "key"], [[",".join(r["models"]) or "-", cli._human(r["size"]), "yes" if r["present"] else "NO", r["key"]] for r in rows])
    return 0


def cmd_cache_verify(args: argparse.Namespace) -> int:
    """Check every recorded file; exit 1 when one is missing, truncated or altered (after --repair: if any remains bad)."""
    from zoo.cache.verify import verify

    problems = verify(repair=args.repair)
    cli = _out()
    if args.json:
        cli._print_json([p.as_dict() for p in problems])
    elif problems:
        for p in problems:
            print(f"{p.path}: {p.reason}" + (f" -> {p.repaired}" if p.repaired else ""))
    else:
        print("all recorded files verify")
    if problems and not args.repair:
        print(f"zoo: {len(problems)} bad file(s); run `zoo cache verify --repair` to re-fetch, re-create or remove them.", file=sys.stderr)
        return 1
    return 0


def cmd_cache_rm(args: argparse.Namespace) -> int:
    """Delete the recorded files of models or keys."""
    from zoo.cache.verify import remove

    keys = remove(args.targets)
    for key in keys:
        print(f"removed {key}")
    return 0


def add_commands(sub: Any) -> None:
    """Add ``pull``, ``lock``, ``bundle`` and ``cache`` to the ``zoo`` sub-parsers."""
    p = sub.add_parser("pull", help="download models into their sources' caches, for offline use later")
    p.add_argument("ids", nargs="*", metavar="ID")
    p.add_argument("--lock", metavar="ZOO_LOCK", help="fetch and verify exactly the files pinned in this lock file")
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("lock", help="pin ids to their resolved revisions and files to sha256 and size")
    p.add_argument("ids", nargs="+", metavar="ID")
    p.add_argument("-o", "--output", default="zoo.lock", help="lock file to write (default: zoo.lock)")
    p.set_defaults(func=cmd_lock)

    p = sub.add_parser("bundle", help="pack the files of a lock into one tar for an offline machine")
    p.add_argument("lock", metavar="ZOO_LOCK")
    p.add_argument("-o", "--output", default="models.tar")
    p.set_defaults(func=cmd_bundle)

    p = sub.add_parser("cache", help="inspect, verify, remove and import cached models")
    csub = p.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    c = csub.add_parser("ls", help="files zoo recorded, with their models")
    c.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    c.set_defaults(func=cmd_cache_ls)
    c = csub.add_parser("verify", help="find missing, truncated or altered files")
    c.add_argument("--repair", action="store_true", help="re-fetch bad files that have a URL, remove the others")
    c.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    c.set_defaults(func=cmd_cache_verify)
    c = csub.add_parser("rm", help="delete a model's files (by id) or one file (by key)")
    c.add_argument("targets", nargs="+", metavar="ID_OR_KEY")
    c.set_defaults(func=cmd_cache_rm)
    c = csub.add_parser("import", help="install a bundle tar, or adopt a folder with --as ID")
    c.add_argument("path", metavar="TAR_OR_DIR")
    c.add_argument("--as", dest="as_id", metavar="ID", help="the model a hand-carried folder holds")
    c.set_defaults(func=cmd_cache_import)
