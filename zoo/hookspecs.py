"""The hooks a zoo plugin can implement. This module is the reference documentation.

A plugin is any importable object (usually a module) with functions decorated by
:data:`zoo.hookimpl` whose names match the specs below. Built-in sources (torchvision, timm,
Keras, TF Hub, Hugging Face, packaged weights) are ordinary plugins found through the entry-point
group ``zoo``, exactly like third-party ones.

Plugins must import fast: import the ML framework inside the loader, never at module level.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from zoo._ids import ModelId
    from zoo.catalog import ModelCard
    from zoo.registrar import Registrar

hookspec = pluggy.HookspecMarker("zoo")
hookimpl = pluggy.HookimplMarker("zoo")


@hookspec
def zoo_register_sources(register: Registrar) -> None:
    """Declare the sources this plugin serves.

    Call ``register(Source(...))`` once per source. A :class:`zoo.Source` names the source
    (``timm``), its framework, the import names it needs (checked without importing them), the
    ``pip install`` line that provides them, and the loader, as ``"module:function"`` so that it is
    imported only when a model is loaded. Registering a name another plugin already registered is
    an error naming both plugins.

    The loader is called as ``loader(model_id, card, **options)`` and returns a :class:`zoo.Backbone`.
    """


@hookspec
def zoo_register_models(register: Registrar) -> None:
    """Add catalog entries (dynamic models) to ``zoo list``, ``zoo search`` and ``zoo info``.

    Call ``register(card)`` with a :class:`zoo.ModelCard` or a dict of its fields, or
    ``register.many(cards)``. This hook runs for every lookup command, so it must not import an ML
    framework: read a listing shipped with the plugin or cached under ``ZOO_HOME``. Curated entries
    in ``registry.yaml`` take precedence over plugin entries with the same id; two plugins
    registering the same id is an error naming both.
    """


@hookspec(firstresult=True)
def zoo_resolve_weights(model_id: ModelId, card: ModelCard | None) -> Any:
    """Return a local weights location for ``model_id``, or ``None`` to pass.

    Asked before a source downloads anything; the first non-``None`` answer wins. The packaged
    weights plugin answers this for weights that ship inside Python packages; a company plugin can
    answer it from an internal mirror. The answer is a path (file or directory) that the source's
    loader understands.
    """


@hookspec(firstresult=True)
def zoo_model_files(model_id: ModelId, card: ModelCard | None) -> Any:
    """List the files ``model_id`` is made of, where its source's cache keeps them; ``None`` to pass.

    Used by ``zoo lock`` (hash every file), ``zoo bundle``, ``zoo pull --lock`` (re-fetch a file by
    its URL) and ``zoo cache import DIR --as ID`` (the paths are the destinations). Answer only for
    your own source, without downloading anything and without the files having to exist yet::

        {"revision": "<resolved commit or version, or None>",
         "files": [{"path": "<local path>", "url": "<download URL or None>",
                    "sha256_prefix": "<hash prefix the source publishes, optional>",
                    "sha256" or "md5": "<hash the source publishes, optional>",
                    "optional": <True: loading does not need it, predict does (default False)>}]}

    ``zoo pull``, ``zoo lock`` and an online ``zoo predict`` fetch a missing optional file from its URL
    (Keras' with-top weights and class index), so that a lock and its bundle carry what ``predict`` needs.

    A source that cannot list the files of a model it has never seen may instead answer
    ``{"revision": ..., "files": [], "folder": "<dir>", "write": {"<path>": "<text>"}}``:
    ``zoo cache import DIR --as ID`` then copies the whole of ``DIR`` into ``folder`` and writes
    the small ``write`` files (a Hugging Face ``refs/main``). Paths must lie under one of the cache roots (``ZOO_HOME``, ``TORCH_HOME``, ``HF_HOME``,
    ``KERAS_HOME``, ``TFHUB_CACHE_DIR``) so that a bundle can recreate them on another machine.
    """


@hookspec
def zoo_register_commands(cli: Any) -> None:
    """Add sub-commands to the ``zoo`` command line.

    ``cli`` is the :class:`argparse` sub-parsers action; add a parser and set its default ``func``
    to a callable taking the parsed args and returning an exit status. Import heavy modules inside
    that callable, not here.
    """
