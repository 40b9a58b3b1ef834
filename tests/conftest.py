"""Shared fixtures: real SQLite files in tmp_path, a real PostgreSQL server (tests/postgres.py),
and a store over :memory:, a file and, for the layers PostgreSQL has, a PostgreSQL database."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

import memstore
import memstore_cli as memstore_cli_module

from . import postgres

ROOT = Path(__file__).resolve().parent.parent

#: Test files whose tests of the store fixture run on PostgreSQL as well: every layer's.
#: A test there about SQLite itself is marked ``sqlite_only`` with the reason. Of the
#: files left out, test_fts_batches tests SQLite's own machinery (FTS5 batches) and
#: test_pgvector opens its own PostgreSQL stores; the others do not use the fixture
#: (test_hostile, test_copy and test_mcp, say, start PostgreSQL stores of their own).
ON_POSTGRES = frozenset(
    {
        "test_collections",
        "test_query",
        "test_transactions",
        "test_concurrency",
        "test_cache",
        "test_event_log",
        "test_history",
        "test_checkpoints",
        "test_conversations",
        "test_graph",
        "test_vectors",
        "test_agents",
        "test_langchain",
        "test_langgraph",
        "test_langgraph_store",
        "test_hygiene",
        "test_temporal",
        "test_store",
        "test_retention",
        "test_records",
        "test_typed",
        "test_search",
        "test_time_indexes",
        "test_reliability",
        "test_pool",
        "test_async",
    }
)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "agent.db"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[postgres.Server]:
    """A PostgreSQL server for the session (see tests/postgres.py); CI must have one."""
    try:
        server, home = postgres.start()
    except postgres.Unavailable as err:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs PostgreSQL: {err}")
        pytest.skip(str(err))
    try:
        yield server
    finally:
        server.stop()
        if home is not None:
            shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def pg_url(postgres_server: postgres.Server) -> Iterator[str]:
    """The URL of a fresh database, already migrated, dropped after the test."""
    url = postgres_server.new_database()
    yield url
    postgres_server.drop(url)


@pytest.fixture
def pgvector_url(postgres_server: postgres.Server) -> Iterator[str]:
    """A fresh database with pgvector (which memstore then uses), dropped after the test."""
    try:
        url = postgres_server.new_database(pgvector=True)
    except postgres.Unavailable as err:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs pgvector on its PostgreSQL (.ci/run builds it): {err}")
        pytest.skip(str(err))
    yield url
    postgres_server.drop(url)


def _where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The path or URL a store fixture's parameter names (a fresh database for "postgres",
    and for "pgvector" on a server with pgvector: tests/test_vectors.py's fixtures)."""
    if request.param in ("postgres", "pgvector"):
        if request.module.__name__.rpartition(".")[2] not in ON_POSTGRES:
            pytest.skip("this file tests SQLite's own machinery")
        marker = request.node.get_closest_marker("sqlite_only")
        if marker is not None:
            pytest.skip(f"SQLite only: {marker.args[0] if marker.args else ''}")
        fixture = {"postgres": "pg_url", "pgvector": "pgvector_url"}[request.param]
        return str(request.getfixturevalue(fixture))
    return ":memory:" if request.param == "memory" else str(tmp_path / "agent.db")  # or encrypted


#: Whether this apsw encrypts (apsw-sqlite3mc's build: .ci/run's .venv-encrypted runs the
#: store fixture's tests on an encrypted file too, `pytest -k encrypted`).
CIPHERS = bool(getattr(memstore.apsw, "mc_version", None))

#: The key of the store fixture's encrypted file: not ASCII, with URI-special characters.
TEST_KEY = "ključ & 100% ?#/"


@pytest.fixture(params=["memory", "file", "postgres", *(["encrypted"] if CIPHERS else [])])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[memstore.Store]:
    key = TEST_KEY if request.param == "encrypted" else None
    with memstore.Store(_where(request, tmp_path), key=key) as opened:
        yield opened


@pytest.fixture(params=["file", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a test may open several Stores at once: a file, or a PostgreSQL database."""
    return _where(request, tmp_path)


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


#: The end of a writer script for run_processes: its ``work(thread)`` run in 4 threads at
#: once, then every thread's error (repr) as the process's exit message.
IN_FOUR_THREADS = """
import sys as _sys, threading as _threading
_errors = []

def _run(t):
    try:
        work(t)
    except BaseException as err:
        _errors.append(repr(err))

_threads = [_threading.Thread(target=_run, args=(t,)) for t in range(4)]
for _thread in _threads:
    _thread.start()
for _thread in _threads:
    _thread.join()
if _errors:
    _sys.exit("\\n".join(_errors))
"""


def run_processes(script: str, url: str, processes: int = 8) -> None:
    """Run a writer script in several processes at once (argv: the store's path or URL, then
    the process's number); every one must end well."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script + IN_FOUR_THREADS, url, str(n)],
            env={"PYTHONPATH": PYTHONPATH},
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(processes)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err


#: The `memstore` command of this checkout, for tests that need a real process.
CLI = "import memstore_cli; memstore_cli.main()"


@dataclass
class Ran:
    """What a command did: its exit code and what it printed."""

    returncode: int
    stdout: str
    stderr: str


def memstore_cli(
    *args: str,
    db: Path | str | None = None,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
) -> Ran:
    """Run the `memstore` command in-process (click's CliRunner), with MEMSTORE_PATH=db,
    no $MEMSTORE_KEY unless ``env`` sets it, and ``env``'s variables.

    An exception the command did not turn into a message and an exit code is
    re-raised: a traceback is a bug.
    """
    runner = CliRunner()
    result = runner.invoke(
        memstore_cli_module.cli,
        list(args),
        input=stdin,
        env={
            "MEMSTORE_PATH": None if db is None else str(db),
            "MEMSTORE_KEY": None,
            "MEMSTORE_NEW_KEY": None,
            **(env or {}),
        },
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
