"""Shared fixtures: real SQLite files in tmp_path, and a store over both :memory: and a file."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

import memstore
import memstore_cli as memstore_cli_module

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


#: Where the checkout keeps its modules: the library, the Datasette plugin, the command
#: line, the demo, the legacy importer, the framework adapters and the MCP server.
MODULE_DIRS = [
    ROOT / d for d in (".", "plugins", "cli", "demo", "legacy", "adapters", "mcp_server")
]
PYTHONPATH = os.pathsep.join(str(d) for d in MODULE_DIRS)


def run_python(
    code: str,
    *args: str,
    timeout: float = 120,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run code in a real subprocess that imports this checkout's memstore and plugins."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**(os.environ if env is None else env), "PYTHONPATH": PYTHONPATH},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


#: The `memstore` command of this checkout, for tests that need a real process.
CLI = "import memstore_cli; memstore_cli.main()"


@dataclass
class Ran:
    """What a command did: its exit code and what it printed."""

    returncode: int
    stdout: str
    stderr: str


def memstore_cli(*args: str, db: Path | str | None = None, stdin: str | None = None) -> Ran:
    """Run the `memstore` command in-process (click's CliRunner), with MEMSTORE_PATH=db.

    An exception the command did not turn into a message and an exit code is
    re-raised: a traceback is a bug.
    """
    runner = CliRunner()
    result = runner.invoke(
        memstore_cli_module.cli,
        list(args),
        input=stdin,
        env={"MEMSTORE_PATH": None if db is None else str(db)},
        prog_name="memstore",
    )
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Ran(result.exit_code, result.stdout, result.stderr)


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built once from the checkout (tests/test_packaging.py checks it)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    (found,) = out.glob("agent_memstore-*.whl")
    return found
