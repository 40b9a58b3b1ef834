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
