"""`memstore demo` and `memstore browse` as real processes: the Datasette child they start
stops with them, whichever signal stops them, and a taken port is refused before anything
is announced."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import memstore

from .conftest import CLI, PYTHONPATH

pytest.importorskip("datasette")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """The memstore command as a process of its own, with ``env``'s variables too."""
    return subprocess.Popen(
        [sys.executable, "-c", CLI, *args],
        env={**os.environ, "PYTHONPATH": PYTHONPATH, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_until_serving(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/memstore", timeout=2) as r:
                assert r.status == 200
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("the server did not start")


def wait_until_free(port: int) -> bool:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if port_is_free(port):
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def store_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "agent.db"
    with memstore.Store(path) as store:
        store.collection("notes", fts=["text"]).put("a", {"text": "ramen"})
    yield path


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_browse_alone_stops_the_server(store_file: Path, stop: int) -> None:
    port = free_port()
    process = start("browse", str(store_file), "--port", str(port))
    try:
        wait_until_serving(port, process)
        process.send_signal(stop)  # to the memstore process only, not its group
        assert process.wait(timeout=30) == 0
        assert wait_until_free(port), "the Datasette child still holds the port"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_sigterm_stops_the_demo_and_its_server(tmp_path: Path) -> None:
    port = free_port()
    process = start("demo", str(tmp_path / "demo.db"), "--port", str(port))
    try:
        wait_until_serving(port, process)
        process.terminate()
        assert process.wait(timeout=30) == 0
        assert wait_until_free(port)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_sigkill_of_the_command_still_stops_the_server(store_file: Path) -> None:
    port = free_port()
    process = start("browse", str(store_file), "--port", str(port))
    try:
        wait_until_serving(port, process)
        process.kill()
        process.wait()
        assert wait_until_free(port), "an orphaned Datasette kept serving"
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.parametrize("command", ["browse", "demo"])
def test_a_taken_port_is_refused_before_it_is_announced(
    store_file: Path, tmp_path: Path, command: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        target = str(store_file) if command == "browse" else str(tmp_path / "demo.db")
        process = start(command, target, "--port", str(port))
        out, _ = process.communicate(timeout=60)
    assert process.returncode == 1, out
    assert "Serving" not in out and f"cannot serve on port {port}" in out
    assert "try --port" in out and "Traceback" not in out
    if command == "demo":
        assert not (tmp_path / "demo.db").exists()  # refused before building
