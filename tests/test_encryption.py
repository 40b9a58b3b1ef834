"""Encryption at rest: Store(path, key=...), encrypt/rekey/decrypt, backups, the CLI.

Everything but the first test needs apsw-sqlite3mc's apsw, which takes apsw's place
(.ci/run runs these in .venv-encrypted: ``pytest -k encrypted``); the store fixture's
tests run on an encrypted file there as well (conftest.py)."""

from __future__ import annotations

import importlib.util
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
import urllib.request
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import memstore

try:  # imported with the module, as tests/test_mcp.py does: its stdio client keeps the
    # stderr of the moment it is imported, which inside a test is pytest's capture
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters
except ImportError:
    Client = None

from .conftest import CIPHERS, CLI, PYTHONPATH, TEST_KEY, memstore_cli

needs_ciphers = pytest.mark.skipif(
    not CIPHERS, reason="needs apsw-sqlite3mc (.ci/run's .venv-encrypted)"
)


def fill(path: Path, key: str | bytes | None = None, n: int = 50) -> None:
    with memstore.Store(path, key=key) as store:
        notes = store.collection("notes", fields={"n": int}, fts=["text"])
        notes.put_many([(f"k{i}", {"n": i, "text": f"secret note {i}"}) for i in range(n)])


def count(path: Path, key: str | bytes | None = None) -> int:
    with memstore.Store(path, key=key, create=False) as store:
        assert store.check(full=True) == []
        return store.collection("notes").count()


@pytest.mark.skipif(CIPHERS, reason="this apsw encrypts")
def test_a_key_without_ciphers_says_what_to_install_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    with pytest.raises(memstore.EncryptionError, match=r"pip install .*apsw-sqlite3mc"):
        memstore.Store(path, key="secret")
    assert not path.exists()
    with pytest.raises(memstore.EncryptionError, match="apsw-sqlite3mc"):
        memstore.encrypt(path, "secret")


def test_a_key_is_never_shown() -> None:
    key = memstore.Key("hunter2")
    assert "hunter2" not in repr(key) and "hunter2" not in str(key)
    assert key == memstore.Key("hunter2") and key != memstore.Key(b"hunter2")
    for bad in ("", b"", "a\x00b", 42, "x" * 5000):
        with pytest.raises(memstore.ValidationError):
            memstore.Key(bad)  # type: ignore[arg-type]


def test_a_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_KEY", "from env")
    assert memstore.Key.from_env("AGENT_KEY") == memstore.Key("from env")
    monkeypatch.delenv("AGENT_KEY")
    with pytest.raises(memstore.EncryptionError, match=r"\$AGENT_KEY is not set"):
        memstore.Key.from_env("AGENT_KEY")


def test_a_key_is_for_a_file(tmp_path: Path) -> None:
    with pytest.raises((memstore.ValidationError, memstore.EncryptionError)):
        memstore.Store(":memory:", key="k")


@needs_ciphers
@pytest.mark.parametrize("key", [TEST_KEY, b"\x00\xffbinary key", memstore.Key("a Key")])
def test_an_encrypted_store_round_trips_and_stock_sqlite_cannot_read_it(
    tmp_path: Path, key: str | bytes | memstore.Key
) -> None:
    path = tmp_path / "agent.db"
    fill(path, key)
    with memstore.Store(path, key=key) as store:
        assert store.encrypted and store.collection("notes").search("secret")
        store.collection("notes").put("in the wal", {"text": "secret note in the WAL"})
        raw = path.read_bytes() + (tmp_path / "agent.db-wal").read_bytes()
    assert memstore.looks_encrypted(path)
    assert b"secret note" not in raw and b"notes" not in raw
    with pytest.raises(sqlite3.DatabaseError, match="not a database"):
        sqlite3.connect(path).execute("SELECT * FROM sqlite_master").fetchall()
    assert count(path, key) == 51


@needs_ciphers
def test_a_wrong_key_no_key_and_a_key_for_a_plain_file_are_clear_and_change_nothing(
    tmp_path: Path,
) -> None:
    path, plain = tmp_path / "agent.db", tmp_path / "plain.db"
    fill(path, "right")
    fill(plain)
    before = path.read_bytes(), plain.read_bytes()
    with pytest.raises(memstore.EncryptionError, match=f"wrong key for {path}") as wrong:
        memstore.Store(path, key="Tr0ub4dor")
    assert "Tr0ub4dor" not in str(wrong.value)
    with pytest.raises(memstore.EncryptionError, match=r"is encrypted .*open it with its key"):
        memstore.Store(path)
    with pytest.raises(memstore.EncryptionError, match="is not encrypted"):
        memstore.Store(plain, key="right")
    assert (path.read_bytes(), plain.read_bytes()) == before
    assert count(path, "right") == 50


@needs_ciphers
def test_backups_stay_encrypted_unless_asked_and_restore_needs_the_key(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    fill(path, "k")
    with memstore.Store(path, key="k") as store:
        same = store.backup(tmp_path / "same.db")
        compact = store.backup(tmp_path / "compact.db", compact=True)
        other = store.backup(tmp_path / "other.db", key="other")
        plain = store.backup(tmp_path / "plain.db", plaintext=True)
        with pytest.raises(memstore.ValidationError, match="not both"):
            store.backup(tmp_path / "x.db", key="a", plaintext=True)
    assert same["encrypted"] and compact["encrypted"] and other["encrypted"]
    assert not plain["encrypted"]
    assert count(tmp_path / "same.db", "k") == count(tmp_path / "compact.db", "k") == 50
    assert count(tmp_path / "other.db", "other") == 50
    stock = sqlite3.connect(tmp_path / "plain.db")
    assert stock.execute("SELECT count(*) FROM notes").fetchone() == (50,)
    with memstore.Store(path, key="k") as store:
        store.collection("notes").delete("k0")
        with pytest.raises(memstore.EncryptionError, match="plain"):
            store.restore(tmp_path / "plain.db")
        with pytest.raises(memstore.MemstoreError, match="cannot be read with this key"):
            store.restore(tmp_path / "other.db")
        store.restore(tmp_path / "other.db", key="other")
        assert store.collection("notes").count() == 50
    with memstore.Store(tmp_path / "plain.db") as plain_store:  # a plain store: plain backups
        plain_store.backup(tmp_path / "enc.db", key="new")
        assert memstore.looks_encrypted(tmp_path / "enc.db")
    assert count(tmp_path / "enc.db", "new") == 50


@needs_ciphers
def test_exports_and_copies_out_of_an_encrypted_store_need_consent(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    fill(path, "k")
    with memstore.Store(path, key="k") as store:
        with pytest.raises(memstore.EncryptionError, match="plaintext=True"):
            store.export(tmp_path / "out")
        assert not (tmp_path / "out" / "manifest.json").exists()
        store.export(tmp_path / "out", plaintext=True)
    assert (tmp_path / "out" / "collections" / "notes.jsonl").exists()
    copied = memstore.copy(path, tmp_path / "copy.db", key="k")  # file to file: a backup
    assert copied["rows"] >= 50 and memstore.looks_encrypted(tmp_path / "copy.db")
    assert count(tmp_path / "copy.db", "k") == 50


@needs_ciphers
def test_a_copy_from_postgresql_to_a_file_is_encrypted_with_the_key(
    tmp_path: Path, pg_url: str
) -> None:
    """From PostgreSQL the key is the new file's: the records never touch the disk
    plain; and the command line takes it from $MEMSTORE_KEY for the destination."""
    with memstore.Store(pg_url) as pg:
        notes = pg.collection("notes", fields={"n": int}, fts=["text"])
        notes.put_many([(f"k{i}", {"n": i, "text": f"secret note {i}"}) for i in range(50)])
    copied = memstore.copy(pg_url, tmp_path / "copy.db", key="k")
    assert copied["rows"] == 50 and memstore.looks_encrypted(tmp_path / "copy.db")
    assert b"secret note" not in (tmp_path / "copy.db").read_bytes()
    assert count(tmp_path / "copy.db", "k") == 50
    ran = memstore_cli("copy", pg_url, str(tmp_path / "cli.db"), env={"MEMSTORE_KEY": "c"})
    assert ran.returncode == 0, ran.stderr
    assert memstore.looks_encrypted(tmp_path / "cli.db") and count(tmp_path / "cli.db", "c") == 50
    ran = memstore_cli("copy", "--ask-key", pg_url, str(tmp_path / "asked.db"), stdin="a\n")
    assert ran.returncode == 0, ran.stderr
    assert count(tmp_path / "asked.db", "a") == 50


@needs_ciphers
def test_encrypt_rekey_and_decrypt(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    fill(path)
    assert memstore.encrypt(path, "one")["encrypted"]
    assert memstore.looks_encrypted(path) and count(path, "one") == 50
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent.db"]  # nothing left beside
    with pytest.raises(memstore.EncryptionError, match="encrypted already"):
        memstore.encrypt(path, "two")
    with pytest.raises(memstore.EncryptionError, match="wrong key"):
        memstore.rekey(path, "two", "three")
    memstore.rekey(path, "one", b"\x01two")
    assert count(path, b"\x01two") == 50
    with pytest.raises(memstore.EncryptionError, match="wrong key"):
        memstore.Store(path, key="one")
    memstore.decrypt(path, tmp_path / "plain.db", b"\x01two")
    assert (
        not memstore.looks_encrypted(tmp_path / "plain.db") and count(tmp_path / "plain.db") == 50
    )
    with pytest.raises(memstore.ValidationError, match="exists"):
        memstore.decrypt(path, tmp_path / "plain.db", b"\x01two")
    assert count(path, b"\x01two") == 50  # decrypt leaves the original as it was


@needs_ciphers
def test_a_store_in_use_is_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    fill(path)
    with memstore.Store(path) as store:
        before = path.read_bytes()
        with pytest.raises(memstore.BusyError, match="in use"):
            memstore.encrypt(path, "k")
        store.collection("notes").put("after", {"n": -1})  # the store goes on as it was
    assert not memstore.looks_encrypted(path) and path.read_bytes()[:16] == before[:16]
    assert count(path) == 51


REWRITER = r"""
import sys, memstore
kind, path = sys.argv[1], sys.argv[2]
print("started", flush=True)
if kind == "encrypt":
    memstore.encrypt(path, "new key")
else:
    memstore.rekey(path, "new key", "newer key")
print("done", flush=True)
"""


@needs_ciphers
@pytest.mark.parametrize("kind", ["encrypt", "rekey"])
def test_a_rewrite_killed_at_any_moment_leaves_one_whole_file_encrypted(
    tmp_path: Path, kind: str
) -> None:
    """SIGKILL at moments of encrypt (or rekey) from its start to past its end (timed
    first on this machine): the file opens, whole, with the old key or the new
    one, never half of each."""
    old, new = (None, "new key") if kind == "encrypt" else ("new key", "newer key")

    def prepared(name: str) -> Path:
        path = tmp_path / name
        fill(path, n=4000)
        if kind == "rekey":
            memstore.encrypt(path, "new key")
        return path

    def start(path: Path) -> tuple[subprocess.Popen[str], float]:
        proc = subprocess.Popen(
            [sys.executable, "-c", REWRITER, kind, str(path)],
            env={**os.environ, "PYTHONPATH": PYTHONPATH},
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline() == "started\n"
        return proc, time.monotonic()

    proc, began = start(prepared("timed.db"))
    assert proc.stdout is not None and proc.stdout.readline() == "done\n"
    took = time.monotonic() - began
    proc.wait()
    outcomes = set()
    for trial in range(12):  # kills spread evenly from the start to well past the end
        path = prepared(f"trial{trial}.db")
        proc, _ = start(path)
        time.sleep(took * 1.5 * trial / 11)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        try:
            found, outcome = count(path, new), "new"
        except memstore.MemstoreError:
            found, outcome = count(path, old), "old"
        assert found == 4000
        outcomes.add(outcome)
        memstore.Store(path, key=new if outcome == "new" else old).close()
    assert outcomes == {"old", "new"}, outcomes  # kills before and after the rename


@needs_ciphers
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    key=st.one_of(
        st.text(
            st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
            min_size=1,
            max_size=40,
        ),
        st.binary(min_size=1, max_size=40),
    )
)
def test_any_key_round_trips_through_a_store_and_its_backup(
    tmp_path: Path, key: str | bytes
) -> None:
    folder = tmp_path / os.urandom(6).hex()
    folder.mkdir()
    fill(folder / "a.db", key, n=3)
    with memstore.Store(folder / "a.db", key=key) as store:
        store.backup(folder / "b.db", key=key, compact=True)  # through a URI's parameters
        store.backup(folder / "c.db", key="other")
    assert count(folder / "b.db", key) == 3 and count(folder / "c.db", "other") == 3
    memstore.rekey(folder / "a.db", key, "other")
    assert count(folder / "a.db", "other") == 3


# --------------------------------------------------------------------------
# The memstore command
# --------------------------------------------------------------------------


@needs_ciphers
def test_the_command_takes_the_key_from_the_environment_or_stdin(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    fill(path, "cli key")
    no_key = memstore_cli("--db", str(path), "info")
    assert no_key.returncode == 1 and "is encrypted" in no_key.stderr, no_key
    by_env = memstore_cli("--db", str(path), "info", env={"MEMSTORE_KEY": "cli key"})
    assert by_env.returncode == 0 and "notes: 50 records" in by_env.stdout, by_env
    by_stdin = memstore_cli("--db", str(path), "--ask-key", "info", stdin="cli key\n")
    assert by_stdin.returncode == 0 and "notes: 50 records" in by_stdin.stdout, by_stdin
    wrong = memstore_cli("--db", str(path), "info", env={"MEMSTORE_KEY": "nope"})
    assert wrong.returncode == 1 and "wrong key" in wrong.stderr and "nope" not in wrong.stderr


@needs_ciphers
def test_the_command_encrypts_rekeys_decrypts_and_backs_up(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    fill(path)
    run = memstore_cli("--db", str(path), "encrypt", env={"MEMSTORE_KEY": "one"})
    assert run.returncode == 0, run
    assert count(path, "one") == 50
    run = memstore_cli(
        "--db", str(path), "rekey", env={"MEMSTORE_KEY": "one", "MEMSTORE_NEW_KEY": "two"}
    )
    assert run.returncode == 0, run
    run = memstore_cli("--db", str(path), "rekey", stdin="two\nthree\n")
    assert run.returncode == 0, run
    assert count(path, "three") == 50
    run = memstore_cli(
        "--db", str(path), "backup", str(tmp_path / "b.db"), "--ask-key", stdin="three\n"
    )
    assert run.returncode == 0 and memstore.looks_encrypted(tmp_path / "b.db"), run
    run = memstore_cli(
        "--db", str(path), "export", str(tmp_path / "out"), env={"MEMSTORE_KEY": "three"}
    )
    assert run.returncode == 1 and "--plaintext" in run.stderr, run
    if importlib.util.find_spec("mcp") is not None:
        reference = tmp_path / "memory.jsonl"
        run = memstore_cli(
            "--db", str(path), "export", str(reference), "--format", "reference",
            env={"MEMSTORE_KEY": "three"},
        )  # fmt: skip
        assert run.returncode == 1 and "--plaintext" in run.stderr and not reference.exists()
    run = memstore_cli(
        "--db", str(path), "decrypt", str(tmp_path / "plain.db"), env={"MEMSTORE_KEY": "three"}
    )
    assert run.returncode == 0 and count(tmp_path / "plain.db") == 50, run


@needs_ciphers
def test_browse_refuses_an_encrypted_store_without_consent(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    fill(path, "k")
    run = memstore_cli("browse", str(path), env={"MEMSTORE_KEY": "k"})
    assert run.returncode == 1, run
    assert "is encrypted" in run.stderr and "--decrypted-copy" in run.stderr


@needs_ciphers
def test_browse_serves_a_decrypted_copy_that_goes_when_the_server_stops(tmp_path: Path) -> None:
    pytest.importorskip("datasette")
    from .test_serve import free_port, start, wait_until_free, wait_until_serving

    path, temporary = tmp_path / "agent.db", tmp_path / "tmp"
    temporary.mkdir()
    fill(path, "k")
    port = free_port()
    process = start(
        "browse", str(path), "--decrypted-copy", "--port", str(port),
        env={"MEMSTORE_KEY": "k", "TMPDIR": str(temporary)},
    )  # fmt: skip
    try:
        wait_until_serving(port, process)
        (folder,) = temporary.iterdir()
        assert folder.stat().st_mode & 0o077 == 0  # the copy's folder is its owner's alone
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/agent/notes.json", timeout=10) as r:
            assert b"secret note" in r.read()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert wait_until_free(port)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert list(temporary.iterdir()) == []  # the plain copy is gone
    assert memstore.looks_encrypted(path) and count(path, "k") == 50


@needs_ciphers
async def test_the_mcp_server_serves_an_encrypted_store_with_the_key_from_its_environment(
    tmp_path: Path,
) -> None:
    if Client is None:
        pytest.skip("needs the mcp extra")
    path = tmp_path / "agent.db"
    fill(path, "k")
    server = StdioServerParameters(
        command=sys.executable,
        args=["-c", CLI, "mcp", "--db", str(path), "--scope", "s1"],
        env={**os.environ, "PYTHONPATH": PYTHONPATH, "MEMSTORE_KEY": "k"},
    )
    async with Client(server) as client:
        result = await client.call_tool("remember", {"text": "kept encrypted"})
        assert not result.is_error, result
    assert memstore.looks_encrypted(path)
    with memstore.Store(path, key="k") as store:
        assert store.check() == [] and "kept encrypted" not in path.read_bytes().decode("latin-1")


@needs_ciphers
def test_a_failed_copy_does_not_show_the_key(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    fill(path, "Tr0ub4dor")
    with (
        memstore.Store(path, key="Tr0ub4dor") as store,
        pytest.raises(memstore.MemstoreError) as caught,
    ):
        store.backup(tmp_path / "missing" / "copy.db", key="C0rrect-H0rse")
    printed = "".join(traceback.format_exception(caught.value)).splitlines()
    shown = "\n".join(line for line in printed if not line.startswith("    "))  # not code
    assert "C0rrect" not in shown and "Tr0ub4dor" not in shown
    assert "copy.db" in str(caught.value)


@needs_ciphers
def test_opening_waits_for_a_connection_that_holds_the_file(tmp_path: Path) -> None:
    """An encrypted store's first statement reads the file: opening it waits out another
    connection's lock (up to ``timeout``), as a plain store's open does, rather than failing
    at once (seen in CI, 1 run in 25 of the four-writer test below)."""
    path = tmp_path / "agent.db"
    fill(path, "k", n=1)
    holder = memstore.Store(path, key="k")
    conn = holder.connection
    conn.execute("PRAGMA locking_mode = EXCLUSIVE")
    conn.execute("BEGIN EXCLUSIVE")
    conn.execute("COMMIT")  # the lock stays: exclusive locking mode
    released = threading.Timer(0.5, holder.close)
    released.start()
    try:
        started = time.monotonic()
        with memstore.Store(path, key="k", timeout=10) as store:
            assert store.collection("notes").count() == 1
        assert time.monotonic() - started >= 0.4
    finally:
        released.join()


WRITER = r"""
import sys, memstore
store = memstore.Store(sys.argv[1], key="k", timeout=30)
notes = store.collection("notes", fields={"n": int}, fts=["text"])
log = store.event_log("agent")
me = sys.argv[2]
for i in range(150):
    notes.put(f"{me}-{i}", {"n": i, "text": f"note {i} of {me}"})
    log.append({"kind": "tick", "payload": {"who": me, "i": i}})
"""


@needs_ciphers
def test_processes_write_one_encrypted_file_together(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    fill(path, "k", n=1)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), f"p{n}"],
            env={**os.environ, "PYTHONPATH": PYTHONPATH},
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    with memstore.Store(path, key="k") as store:
        assert store.check(full=True) == []
        assert store.collection("notes").count() == 1 + 4 * 150
        log = store.event_log("agent")
        assert [e.seq for e in log.read()] == list(range(1, 4 * 150 + 1))
    assert memstore.looks_encrypted(path)


@needs_ciphers
def test_an_encrypted_store_keeps_more_decrypted_pages_in_its_cache(tmp_path: Path) -> None:
    with memstore.Store(tmp_path / "secret.db", key="k") as secret:
        assert secret.connection.execute("PRAGMA cache_size").fetchall() == [(-32768,)]
    with memstore.Store(tmp_path / "plain.db") as plain:  # SQLite's default, as ever
        assert plain.connection.execute("PRAGMA cache_size").fetchall() == [(-2000,)]
