"""The README keeps its promises: the test command CI runs, the examples' names exist."""

from __future__ import annotations

import re

import memstore

from .conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_readme_opens_with_the_demo_and_test_commands() -> None:
    blocks = re.findall(r"```bash\n(.+?)\n```", README, re.S)
    demo, tests = blocks[0].strip(), blocks[1].strip()
    assert README.index(tests) < 600
    assert "pip install" in demo and demo.endswith("memstore demo")
    assert "pip install" in tests and "pytest" in tests
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci


OWNERS = {
    "events": memstore.Collection,
    "decisions": memstore.Collection,
    "collection": memstore.Collection,
    "store": memstore.Store,
    "log": memstore.EventLog,
    "conv": memstore.Conversations,
    "cp": memstore.Checkpoints,
    "g": memstore.Graph,
    "cache": memstore.Cache,
    "notes": memstore.Collection,
}


def test_methods_named_in_the_readme_exist() -> None:
    calls = re.findall(
        r"\b(events|decisions|collection|store|log|conv|cp|g|cache|notes)\.([a-z_]+)\(", README
    )
    assert len(calls) > 40
    for owner, name in calls:
        assert hasattr(OWNERS[owner], name), f"{owner}.{name}"


def test_every_exception_is_documented() -> None:
    for name in memstore.__all__:
        if name.endswith("Error"):
            assert f"`{name}`" in README, name
