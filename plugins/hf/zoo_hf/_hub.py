"""Where a repo's files are: a ``path=`` option, a ``zoo_resolve_weights`` answer, or HF's own cache.

Downloads go through :func:`huggingface_hub.snapshot_download` into the standard cache layout
(``$HF_HOME/hub/models--org--name/{blobs,refs,snapshots}``), configs, tokenizer and preprocessor
files plus ``*.safetensors`` only (``pytorch_model.bin`` only for repos that have no safetensors).
Offline (``ZOO_OFFLINE`` / ``HF_HUB_OFFLINE``) nothing is fetched: ``local_files_only=True``.
Online, every file of the snapshot is then held to the hash the Hub published for it
(:mod:`zoo.cache.hub_blobs`); a mismatch removes the file and raises ``IntegrityError``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from zoo.constants import hf_hub_cache, hf_repo_dir, offline
from zoo.errors import InvalidInputError, NotCachedError

#: Everything but the weights that transformers needs to rebuild a model and its preprocessing.
CONFIG_PATTERNS = [
    "*.json",
    "*.txt",
    "*.model",
    "tokenizer*",
    "*.py",  # a repo's own code: downloaded, executed only when trust_remote_code passed zoo's policy
]
SAFE_WEIGHTS = ["*.safetensors"]
TORCH_WEIGHTS = ["pytorch_model*.bin"]
#: Exported copies for other runtimes, never needed here.
IGNORE_PATTERNS = ["onnx/*", "openvino/*", "coreml/*", "tf_*", "flax_*", "rust_*", "*.h5", "*.msgpack", "*.onnx", "*.ot"]


def repo_of(model_id: Any) -> str:
    """The Hub repo id of a parsed ``hf:`` id (a stray tag is part of the name: ``org/model-v1.5``)."""
    return model_id.name + (f".{model_id.tag}" if model_id.tag else "")





def _has_weights(folder: Path) -> bool:
    return any(folder.glob("*.safetensors")) or any(folder.glob("pytorch_model*.bin"))


def _checked_dir(path: Any, what: str) -> Path:
    folder = Path(path).expanduser()
    if folder.is_file():
        folder = folder.parent
    if not (folder / "config.json").is_file():
        raise InvalidInputError(f"{what} {folder} has no config.json; point it at a saved transformers model directory.")
    return folder


def locate(model_id: Any, card: Any, path: Any = None) -> Path:
    """The local directory holding ``model_id``'s config, tokenizer/processor and weights.

    Args:
        model_id: the parsed ``hf:`` id; ``@revision`` selects a commit, branch or tag.
        card: its catalog card, passed on to ``zoo_resolve_weights``.
        path: a local model directory that overrides every lookup.

    Raises:
        NotCachedError: offline and the snapshot is not in HF's cache.
        InvalidInputError: ``path`` (or a plugin's answer) is not a model directory.
    """
    if path is not None:
        return _checked_dir(path, "path=")
    import zoo

    answer = zoo.resolve_weights(model_id, card)
    if answer is not None:
        return _checked_dir(answer, "zoo_resolve_weights answer")
    return _snapshot(model_id)


def _snapshot(model_id: Any) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import IncompleteSnapshotError, LocalEntryNotFoundError

    repo = repo_of(model_id)
    revision = model_id.revision or "main"
    cache = hf_hub_cache()
    where = hf_repo_dir(repo)
    if offline():
        try:
            folder = Path(
                snapshot_download(
                    repo,
                    revision=revision,
                    cache_dir=cache,
                    local_files_only=True,
                    allow_patterns=CONFIG_PATTERNS + SAFE_WEIGHTS,
                    ignore_patterns=IGNORE_PATTERNS,
                )
            )
        except (LocalEntryNotFoundError, IncompleteSnapshotError, FileNotFoundError):
            raise NotCachedError(str(model_id), str(where)) from None
        if not (folder / "config.json").is_file() or not _has_weights(folder):
            raise NotCachedError(str(model_id), str(folder))
        from zoo.cache.records import require_unchanged

        for f in folder.iterdir():  # the cached files zoo recorded must still be the bytes it recorded (a stat each)
            if f.is_file():
                require_unchanged(f, model_id)
        return folder
    from huggingface_hub import HfApi

    from zoo.cache.download import hub_host, with_retries
    from zoo.cache.hub_blobs import check_snapshot

    what = f"{model_id} from {os.environ.get('HF_ENDPOINT', 'https://huggingface.co')}"
    files = with_retries(lambda: HfApi().list_repo_files(repo, revision=revision), what, host=hub_host())
    weights = SAFE_WEIGHTS if any(f.endswith(".safetensors") for f in files) else TORCH_WEIGHTS
    # the library resumes cut transfers and renames whole files into place; zoo adds retries on 5xx
    folder = Path(
        with_retries(
            lambda: snapshot_download(
                repo,
                revision=revision,
                cache_dir=cache,
                allow_patterns=CONFIG_PATTERNS + weights,
                ignore_patterns=IGNORE_PATTERNS,
            ),
            what,
        )
    )
    check_snapshot(folder, str(model_id))  # the library checks sizes only: hold every blob to the Hub's published hash
    return folder


def model_files(model_id: Any) -> dict[str, Any] | None:
    """The cached snapshot files of an ``hf:`` id and its resolved commit (for ``zoo_model_files``).

    Reads only the cache: ``refs/<revision>`` gives the commit, ``snapshots/<commit>/`` the files.
    When nothing is cached, answers with the snapshot folder a hand-carried directory is adopted
    into (``zoo cache import DIR --as hf:org/model``) and the ref to write.
    """
    import re

    repo = repo_of(model_id)
    where = hf_repo_dir(repo)
    revision = model_id.revision or "main"
    if re.fullmatch(r"[0-9a-f]{40}", revision) and (where / "snapshots" / revision).is_dir():
        commit, ref = revision, None
    else:
        ref = where / "refs" / revision
        commit = ref.read_text(encoding="utf-8").strip() if ref.is_file() else None
    if commit is None:
        # not cached: a hand-carried model directory is adopted as a snapshot of a local commit id
        # (the pinned revision when it is a commit, else one derived from the repo name)
        import hashlib

        local = revision if re.fullmatch(r"[0-9a-f]{40}", revision) else hashlib.sha1(f"zoo-import:{repo}".encode()).hexdigest()
        write = {} if revision == local else {str(where / "refs" / revision): local}
        return {"revision": local, "files": [], "folder": str(where / "snapshots" / local), "write": write}
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    snap = where / "snapshots" / commit
    files = [
        {"path": str(p), "url": f"{endpoint}/{repo}/resolve/{commit}/{p.relative_to(snap).as_posix()}"}
        for p in sorted(snap.rglob("*"))
        if p.is_file()
    ]
    if ref is not None:
        files.append({"path": str(ref), "url": None})
    return {"revision": commit, "files": files}
