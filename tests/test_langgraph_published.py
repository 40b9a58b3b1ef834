"""LangGraph's own store tests (langgraph-checkpoint's published tests/test_store.py, vector
search included) run unchanged against MemstoreStore in place of InMemoryStore.

The tests ship in langgraph-checkpoint's source distribution, not in its wheel: the
installed version's sdist is fetched from the package registry, and the suite runs in
a subprocess where ``langgraph.store.memory.InMemoryStore`` is MemstoreStore on
``:memory:``.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import PYTHONPATH

SHIM = """
import itertools, os

import langgraph.store.memory
import psycopg
from memstore_langgraph import MemstoreStore

KEEP_PAST = os.environ.get("MEMSTORE_KEEP_PAST") == "1"
# A PostgreSQL server's URL and template database: each store a fresh copy of it.
SERVER, TEMPLATE = os.environ.get("MEMSTORE_PG_SERVER"), os.environ.get("MEMSTORE_PG_TEMPLATE")
NAMES = itertools.count(1)


def where():
    if not SERVER:
        return ":memory:"
    name = f"memstore_published_{os.getpid()}_{next(NAMES)}"
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    return SERVER.rpartition("/")[0] + "/" + name


class MemstoreInMemoryStore(MemstoreStore):
    def __init__(self, *, index=None, **options):
        super().__init__(where(), index=index, keep_past=KEEP_PAST, **options)


langgraph.store.memory.InMemoryStore = MemstoreInMemoryStore


def pytest_report_header():
    return f"InMemoryStore is {langgraph.store.memory.InMemoryStore.__mro__[1].__module__}"
"""


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """langgraph-checkpoint's sdist, of the version installed, unpacked."""
    version = importlib.metadata.version("langgraph-checkpoint")
    where = tmp_path_factory.mktemp("sdist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--dest",
            str(where),
            f"langgraph-checkpoint=={version}",
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (archive,) = where.glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(where, filter="data")
    root = where / f"langgraph_checkpoint-{version}"
    assert (root / "tests" / "test_store.py").is_file()
    (where / "memstore_shim.py").write_text(SHIM)
    return root


@pytest.mark.parametrize(
    ("engine", "keep_past"),
    [("sqlite", False), ("sqlite", True), ("postgres", False), ("postgres", True)],
    ids=["plain", "keep_past", "postgres", "postgres-keep_past"],
)
def test_langgraph_store_suite_passes_on_memstore(
    published: Path, engine: str, keep_past: bool, request: pytest.FixtureRequest
) -> None:
    """The suite, on MemstoreStore as it is and with keep_past=True (every value kept: the
    store must behave the same for every read of the present), and on PostgreSQL (a fresh
    database for each store the suite makes)."""
    server = {}
    if engine == "postgres":
        postgres_server = request.getfixturevalue("postgres_server")
        server = {
            "MEMSTORE_PG_SERVER": postgres_server.base_url,
            "MEMSTORE_PG_TEMPLATE": postgres_server.template,
        }
    ran = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "memstore_shim",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            "-v",
            "tests/test_store.py",
        ],
        cwd=published,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": f"{published.parent}:{PYTHONPATH}",
            "MEMSTORE_KEEP_PAST": "1" if keep_past else "0",
            **server,
        },
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if server:  # the databases the suite's stores made
        import psycopg

        with psycopg.connect(server["MEMSTORE_PG_SERVER"], autocommit=True) as conn:
            made = conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE 'memstore_published_%'"
            ).fetchall()
            for (name,) in made:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr[-2000:]
    summary = ran.stdout.strip().splitlines()[-1]
    passed = int(re.search(r"(\d+) passed", summary).group(1))  # type: ignore[union-attr]
    assert passed >= 100 and "failed" not in summary and "skipped" not in summary, summary
    # The shim was in force, and the vector tests ran on memstore's vector memory.
    assert "InMemoryStore is memstore_langgraph" in ran.stdout
    for test in (
        "test_vector_search_with_filters",
        "test_embed_with_path",
        "test_non_ascii",
        "test_async_batched_vector_search_concurrent",
    ):
        assert f"{test} PASSED" in ran.stdout, test
