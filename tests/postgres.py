"""A real PostgreSQL server for the suite: started once per session, a database per test.

The server is Debian's PostgreSQL (``.ci/run`` installs it when missing), set up
with initdb in a temporary directory and started with pg_ctl on 127.0.0.1 at a
free port, run as the ``postgres`` user when the suite runs as root (initdb
refuses root). ``MEMSTORE_TEST_PG=postgresql://...`` uses a server that is
running already instead; its user must be allowed to create databases.

Each test gets a fresh database copied from a template that memstore has
already migrated (``CREATE DATABASE ... TEMPLATE``, a few tens of ms).

The server trades durability for speed, as a test server may: fsync,
synchronous_commit and full_page_writes are off (a crash of the machine, not of
a process, could lose its last commits). The benchmarks state their own settings.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import memstore

#: What the suite runs as when it must not be root.
SERVER_USER = "postgres"


class Unavailable(Exception):
    """No PostgreSQL server can be had: no binaries, and no MEMSTORE_TEST_PG."""


def _binary(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name) or ""]
    if not found[-1]:
        raise Unavailable(f"{name} not found: install Debian's postgresql, or set MEMSTORE_TEST_PG")
    return found[-1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """A server the tests create databases on; ``url(db)`` names one of them."""

    def __init__(
        self, base_url: str, stop: list[str] | None = None, start: list[str] | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._stop, self._start = stop, start
        self._names = itertools.count(1)
        self.template = f"memstore_template_{os.getpid()}"
        self._with_pgvector: bool | Unavailable = False

    def url(self, database: str) -> str:
        root, _, _ = self.base_url.rpartition("/")
        return f"{root}/{database}"

    def admin(self, sql: str) -> None:
        self.admin_in(self.base_url.rpartition("/")[2], sql)

    def admin_in(self, database: str, sql: str) -> None:
        """Run a statement in a database of this server, autocommitted."""
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(sql)

    def prepare(self) -> None:
        """The template: an empty database memstore has migrated once."""
        self.admin(f'DROP DATABASE IF EXISTS "{self.template}"')
        self.admin(f'CREATE DATABASE "{self.template}"')
        memstore.Store(self.url(self.template)).close()

    def new_database(self, *, pgvector: bool = False) -> str:
        """A fresh database; ``pgvector``: one with the extension, which memstore then
        uses (Unavailable when the server has no pgvector)."""
        name = f"memstore_test_{os.getpid()}_{next(self._names)}"
        template = self._pgvector_template() if pgvector else self.template
        self.admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self.url(name)

    def _pgvector_template(self) -> str:
        template = f"{self.template}_pgvector"
        if isinstance(self._with_pgvector, Unavailable):  # found missing once: for all
            raise self._with_pgvector
        if not self._with_pgvector:
            self.admin(f'DROP DATABASE IF EXISTS "{template}"')
            self.admin(f'CREATE DATABASE "{template}" TEMPLATE "{self.template}"')
            import psycopg

            try:
                self.admin_in(template, "CREATE EXTENSION vector")
            except psycopg.errors.UndefinedFile as err:  # no control file
                self._with_pgvector = Unavailable(f"this server has no pgvector: {err}")
                raise self._with_pgvector from err
            memstore.Store(self.url(template)).close()  # memstore adopts it, once
            self._with_pgvector = True
        return template

    def drop(self, url: str) -> None:
        name = url.rpartition("/")[2]
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def crash_and_restart(self) -> None:
        """Stop the server as a crash would (``-m immediate``: no checkpoint, every
        backend killed), then start it again, through its recovery from the WAL."""
        assert self._stop is not None and self._start is not None, "not a server of ours"
        subprocess.run(self._stop, check=True, capture_output=True, timeout=60)
        subprocess.run(self._start, check=True, capture_output=True, timeout=120)

    def stop(self) -> None:
        if self._stop is None:
            self.admin(f'DROP DATABASE IF EXISTS "{self.template}"')
            self.admin(f'DROP DATABASE IF EXISTS "{self.template}_pgvector"')
        else:
            subprocess.run(self._stop, capture_output=True, check=False, timeout=60)


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", SERVER_USER, "--", *command] if os.geteuid() == 0 else command


def start(*, durable: bool = False) -> tuple[Server, Path | None]:
    """A running server: the one MEMSTORE_TEST_PG names, or a new one in a temp directory.
    ``durable``: with the server's defaults (fsync, synchronous_commit, full_page_writes
    on), as the benchmarks run it; tests run without them."""
    given = os.environ.get("MEMSTORE_TEST_PG")
    if given:
        server = Server(given)
        server.prepare()
        return server, None
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    home = Path(tempfile.mkdtemp(prefix="memstore-pg-"))
    data = home / "data"
    if os.geteuid() == 0:
        shutil.chown(home, SERVER_USER)
    subprocess.run(
        _as_server_user(
            [initdb, "-D", str(data), "-U", "memstore", "-A", "trust", "-E", "UTF8", "--no-sync"]
        ),
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = _free_port()
    options = (
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={home} "
        "-c max_connections=200"
    )
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    begin = _as_server_user(
        [pg_ctl, "-D", str(data), "-o", options, "-l", f"{home}/log", "-w", "start"]
    )
    subprocess.run(begin, check=True, capture_output=True, timeout=120)
    stop = _as_server_user([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"])
    server = Server(f"postgresql://memstore@127.0.0.1:{port}/postgres", stop, begin)
    server.prepare()
    return server, home
