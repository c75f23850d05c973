"""A minimal third-party zoo plugin: the ``example`` source with two tiny CNNs.

Imports nothing heavy: torch is imported by the loader, only when a model is loaded.
"""

from __future__ import annotations

from zoo import Source, hookimpl

MODELS = [
    {
        "id": "example:tinycnn.random",
        "family": "tinycnn",
        "modality": "image",
        "framework": "torch",
        "tasks": ["image-feature-extraction"],
        "params": 1440,
        "input_size": 32,
        "feature_dim": 16,
        "description": "Two-stage toy CNN with seeded random weights (example plugin)",
    },
    {
        "id": "example:tinycnn.wide",
        "family": "tinycnn",
        "modality": "image",
        "framework": "torch",
        "tasks": ["image-feature-extraction"],
        "params": 2640,
        "input_size": 32,
        "feature_dim": 32,
        "description": "Wider toy CNN (example plugin)",
    },
]


@hookimpl
def zoo_register_sources(register):
    register(
        Source(
            name="example",
            framework="torch",
            loader="zoo_example.loader:load",
            requires=("torch",),
            install="pip install zoo-example",
            description="toy CNNs from the plugin authoring guide",
        )
    )


@hookimpl
def zoo_register_models(register):
    register.many(MODELS)
