"""The README keeps its promises: the test command CI runs, the examples' names exist."""

from __future__ import annotations

import re

import memstore

from .conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_readme_opens_with_the_test_command_ci_runs() -> None:
    first_block = re.search(r"```bash\n(.+?)\n```", README, re.S)
    assert first_block is not None and README.index("```bash") < 200
    command = first_block.group(1).strip()
    assert "pytest" in command and "pip install" in command
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert command in ci


def test_methods_named_in_the_readme_exist() -> None:
    for name in set(re.findall(r"(?:events|store|collection|decisions)\.([a-z_]+)\(", README)):
        assert hasattr(memstore.Collection, name) or hasattr(memstore.Store, name), name


def test_every_exception_is_documented() -> None:
    for name in memstore.__all__:
        if name.endswith("Error"):
            assert f"`{name}`" in README, name
