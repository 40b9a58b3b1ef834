"""Shared fixtures: real SQLite files in tmp_path, and a store over both :memory: and a file."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import memstore

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "agent.db"


@pytest.fixture(params=["memory", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[memstore.Store]:
    path = ":memory:" if request.param == "memory" else str(tmp_path / "agent.db")
    with memstore.Store(path) as opened:
        yield opened


@pytest.fixture
def file_store(db_path: Path) -> Iterator[memstore.Store]:
    with memstore.Store(db_path) as opened:
        yield opened


@pytest.fixture
def events(store: memstore.Store) -> memstore.Collection:
    return store.collection(
        "events",
        fields={"event_type": str, "agent_id": str, "timestamp": str, "duration": float},
        fts=["summary", "text"],
    )


def run_python(
    code: str,
    *args: str,
    timeout: float = 120,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run code in a real subprocess that imports this checkout's memstore."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**(os.environ if env is None else env), "PYTHONPATH": str(ROOT)},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


CLI = "import memstore; memstore.main()"


def memstore_cli(
    *args: str, db: Path | str | None = None, stdin: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the `memstore` command of this checkout in a real subprocess."""
    env = {k: v for k, v in os.environ.items() if k != "MEMSTORE_PATH"}
    if db is not None:
        env["MEMSTORE_PATH"] = str(db)
    return run_python(CLI, *args, timeout=timeout, stdin=stdin, env=env)
