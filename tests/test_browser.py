"""A real browser on a running `memstore demo`: headless Chromium (Debian's) driven by Playwright.

Screenshots land in artifacts/screenshots/ for people to look at.
"""

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

from .conftest import CLI, PYTHONPATH, ROOT

CHROMIUM = Path("/usr/bin/chromium")
# As this machine's probe found: without the networking flags Chromium keeps
# trying to reach hosts a closed network refuses.
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = ROOT / "artifacts" / "screenshots"

if not CHROMIUM.exists():
    if os.environ.get("CI"):
        raise RuntimeError("CI must install chromium (.ci/run does)")
    pytest.skip("no /usr/bin/chromium: apt-get install chromium", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    path = tmp_path_factory.mktemp("demo") / "demo.db"
    log = open(path.with_suffix(".log"), "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CLI,
            "demo",
            str(path),
            "--port",
            str(port),
        ],
        env={**os.environ, "PYTHONPATH": PYTHONPATH},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: datasette is its child
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(base + "/-/memstore", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(path.with_suffix(".log").read_text()) from None
                time.sleep(0.3)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def page(demo: str) -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        yield page
        browser.close()


def test_overview_in_a_browser(demo: str, page: object) -> None:
    page.goto(demo + "/-/memstore")  # type: ignore[attr-defined]
    assert page.title() == "Agent memory"  # type: ignore[attr-defined]
    text = page.inner_text("body")  # type: ignore[attr-defined]
    for expected in [
        "Collections",
        "tasks",
        "decisions",
        "notes",
        "Event logs",
        "trip-planner",
        "Conversations",
        "Checkpoints",
        "Graph edges",
        "Cache entries",
        "keeps history",
    ]:
        assert expected in text, expected
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "overview.png"), full_page=True)  # type: ignore[attr-defined]


def test_conversation_in_a_browser(demo: str, page: object) -> None:
    page.goto(demo + "/-/memstore")  # type: ignore[attr-defined]
    page.get_by_role("link", name="Book a train from Paris to Lyon").first.click()  # type: ignore[attr-defined]
    page.wait_for_url("**/threads/chat-t-1")  # type: ignore[attr-defined]
    text = page.inner_text("body")  # type: ignore[attr-defined]
    assert "Conversation: Book a train from Paris to Lyon" in text
    assert "Please book a train from Paris to Lyon." in text
    assert "Token usage" in text and "planner-large" in text
    assert "Try a cheaper train" in text and "merged into chat-t-1" in text
    assert "The Ouigo at 7:52 is 19 euros cheaper." in text
    messages = page.locator(".memstore-msg")  # type: ignore[attr-defined]
    assert messages.count() >= 10
    assert "system" in messages.first.inner_text()
    page.screenshot(path=str(SHOTS / "conversation.png"), full_page=True)  # type: ignore[attr-defined]


def test_timeline_chart_in_a_browser(demo: str, page: object) -> None:
    page.goto(demo + "/-/memstore/demo/events/trip-planner")  # type: ignore[attr-defined]
    bars = page.locator("svg.memstore-timeline rect")  # type: ignore[attr-defined]
    assert bars.count() > 10
    box = bars.first.bounding_box()
    assert box is not None and box["height"] > 0 and box["width"] > 0
    page.screenshot(path=str(SHOTS / "timeline.png"), full_page=False)  # type: ignore[attr-defined]
