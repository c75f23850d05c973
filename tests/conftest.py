from __future__ import annotations

import pytest

import zoo


@pytest.fixture(autouse=True)
def _fresh_zoo(zoo_home):
    """Every core test gets its own cache and a freshly loaded catalog."""
    zoo.reset()
    yield
    zoo.reset()
