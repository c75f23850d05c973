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


@hookspec
def zoo_register_commands(cli: Any) -> None:
    """Add sub-commands to the ``zoo`` command line.

    ``cli`` is the :class:`argparse` sub-parsers action; add a parser and set its default ``func``
    to a callable taking the parsed args and returning an exit status. Import heavy modules inside
    that callable, not here.
    """
