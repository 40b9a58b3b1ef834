"""`memstore demo` and `memstore browse`, run for real in subprocesses."""

from __future__ import annotations

import sys
from pathlib import Path

import memstore

from .conftest import CLI, run_python


def test_demo_builds_a_store_with_every_kind_of_memory(tmp_path: Path) -> None:
    path = tmp_path / "demo.db"
    result = run_python(CLI, "demo", str(path), "--build-only")
    assert result.returncode == 0, result.stderr
    assert "Built the demo store" in result.stdout
    with memstore.Store(path) as store:
        assert store.collections() == ["decisions", "notes", "tasks"]
        assert len(store.collection("tasks").history("t-1")) >= 3
        assert len(store.event_log("trip-planner")) > 40
        conv = store.conversations()
        assert {t.status for t in conv.threads()} == {"active", "merged", "abandoned"}
        assert conv.usage()["cost"] > 0
        assert len(store.checkpoints().branches("chat-t-1")) == 2
        assert len(store.graph("facts").edges()) == 6
        assert store.cache("llm").stats()["hits"] > 0
        notes = store.collection("notes")
        assert notes.stats()["vectors"]["count"] == len(notes) >= 12
        nearest = notes.nearest(notes.vector("note-1"), k=2)
        assert nearest[0].key == "note-1"
        assert store.check() == []
    again = run_python(CLI, "demo", str(path), "--build-only")
    assert "Using the demo store" in again.stdout
    rebuilt = run_python(CLI, "demo", str(path), "--build-only", "--rebuild")
    assert "Built the demo store" in rebuilt.stdout


def test_browse_needs_an_existing_file(tmp_path: Path) -> None:
    result = run_python(CLI, "browse", str(tmp_path / "missing.db"))
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_version_and_help() -> None:
    assert (
        run_python(CLI, "--version").stdout.strip() == f"memstore, version {memstore.__version__}"
    )
    help_text = run_python(CLI, "--help").stdout
    assert "demo" in help_text and "browse" in help_text


def test_console_script_is_installed() -> None:
    assert (Path(sys.executable).parent / "memstore").exists()
