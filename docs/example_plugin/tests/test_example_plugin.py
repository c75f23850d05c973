"""How a third-party plugin tests itself with zoo's contract suites."""

import pytest

import zoo
from zoo.testing import BackboneContract, PluginContract


@pytest.fixture
def plugin_name():
    return "example"


class TestExamplePlugin(PluginContract):
    pass


class TestTinyCnn(BackboneContract):
    @pytest.fixture
    def backbone(self):
        zoo.reset()
        return zoo.load("example:tinycnn.random")
