"""Every hook is documented, and the docs name only hooks that exist."""

import inspect
import re
from pathlib import Path

from zoo import hookspecs

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _hooks():
    return sorted(n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("zoo_"))


def test_every_hook_has_a_doc_section():
    text = (DOCS / "hooks.md").read_text()
    sections = set(re.findall(r"^## (zoo_\w+)$", text, re.M))
    assert set(_hooks()) == sections


def test_every_hook_has_a_docstring_and_is_small_in_number():
    hooks = _hooks()
    assert 1 <= len(hooks) <= 8
    for name in hooks:
        assert (getattr(hookspecs, name).__doc__ or "").strip(), f"{name} has no docstring"


def test_every_hook_is_exercised_by_a_test():
    tests = "\n".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    for name in _hooks():
        assert f"def {name}" in tests or name in tests, f"no test implements {name}"


def test_guide_points_at_real_files():
    guide = (DOCS / "plugins.md").read_text()
    assert (DOCS / "example_plugin" / "pyproject.toml").is_file()
    assert 'example = "zoo_example"' in (DOCS / "example_plugin" / "pyproject.toml").read_text()
    assert "zoo.testing" in guide
