"""A real browser on a running `memstore demo`: headless Chromium (Debian's) driven by Playwright.

Screenshots land in artifacts/screenshots/ for people to look at.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
def page(demo: str) -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        yield page
        browser.close()


def shoot(page: Any, name: str, *, full_page: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


def test_overview_in_a_browser(demo: str, page: Any) -> None:
    page.goto(demo + "/-/memstore")
    assert page.title() == "Agent memory"
    text = page.inner_text("body")
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
    # Timestamps read as dates and times, to the second, with the exact one on hover.
    stamps = page.locator("main time, .content time, time").all_inner_texts()
    assert stamps and all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", t) for t in stamps)
    assert not re.search(r"\dT\d", page.inner_text("body"))  # no raw ISO text anywhere
    shoot(page, "overview")


def test_database_page_lists_collections_first(demo: str, page: Any) -> None:
    page.goto(demo + "/demo")
    names = page.locator(".db-table h3 a").all_inner_texts()
    assert names[:3] == ["decisions", "notes", "tasks"], names
    assert all(n.startswith("memstore_") for n in names[3:]), names
    groups = page.locator(".memstore-group").all_inner_texts()
    assert [g.lower() for g in groups] == ["collections", "memory layers and other tables"]
    shoot(page, "database")


def test_conversation_in_a_browser(demo: str, page: Any) -> None:
    page.goto(demo + "/-/memstore")
    page.get_by_role("link", name="Book a train from Paris to Lyon").first.click()
    page.wait_for_url("**/threads/chat-t-1")
    text = page.inner_text("body")
    assert "Conversation: Book a train from Paris to Lyon" in text
    assert "Please book a train from Paris to Lyon." in text
    assert "Token usage" in text and "planner-large" in text
    assert "Try a cheaper train" in text and "merged into chat-t-1" in text
    assert "The Ouigo at 7:52 is 19 euros cheaper." in text
    messages = page.locator(".memstore-msg")
    assert messages.count() >= 10
    assert "system" in messages.first.inner_text()
    # Tool calls are folded until asked for.
    calls = page.locator("details.tool-calls")
    assert calls.count() >= 6
    assert not calls.first.locator("pre").is_visible()
    calls.first.locator("summary").click()
    assert calls.first.locator("pre").is_visible()
    shoot(page, "conversation")


def test_token_table_fits_a_small_screen(demo: str, page: Any) -> None:
    page.set_viewport_size({"width": 400, "height": 800})
    try:
        page.goto(demo + "/-/memstore/demo/threads/chat-t-1")
        box = page.locator("table.memstore-usage").bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 400, box
        shoot(page, "conversation-400px", full_page=False)
    finally:
        page.set_viewport_size({"width": 1280, "height": 1600})


def test_timeline_chart_in_a_browser(demo: str, page: Any) -> None:
    page.goto(demo + "/-/memstore/demo/events/trip-planner")
    chart = page.locator("svg.memstore-timeline")
    content = page.locator(".memstore-chart").bounding_box()
    box = chart.bounding_box()
    assert box is not None and content is not None
    assert box["width"] >= content["width"] - 1 and box["width"] > 900  # the page's full width
    bars = chart.locator("rect")
    assert bars.count() > 10
    first = bars.first.bounding_box()
    assert first is not None and first["height"] > 0 and first["width"] > 0
    assert chart.locator("line.zero").count() == 1 and chart.locator("line.grid").count() >= 2
    # Every bucket of the span has a slot: the demo's half-hour pauses leave empty ones.
    labels = chart.locator("text").all_inner_texts()
    assert len(labels) > 5
    legend = page.locator(".memstore-legend li")
    assert legend.count() >= 5
    for i in range(legend.count()):
        item = legend.nth(i).bounding_box()
        assert item is not None and item["x"] + item["width"] <= 1280
    shoot(page, "timeline", full_page=False)


def test_checkpoints_in_a_browser(demo: str, page: Any) -> None:
    page.goto(demo + "/-/memstore/demo/checkpoints/chat-t-1")
    tree = page.locator("ul.memstore-tree").first
    assert tree.locator("li").count() == 2
    assert "cheaper from" in tree.locator("li li").first.inner_text()
    assert page.locator(".memstore-diff").count() >= 8
    shoot(page, "checkpoints")


def test_search_in_a_browser(demo: str, page: Any) -> None:
    page.goto(demo + "/-/memstore")
    page.fill("input[name=q]", "lyon")
    page.click("input[type=submit]")
    page.wait_for_url("**/search?q=lyon")
    headers = page.locator("table.memstore-results th").all_inner_texts()
    assert headers == ["found in", "item", "match"]
    assert page.locator("table.memstore-results mark").count() >= 3
    shoot(page, "search")
    page.goto(demo + "/-/memstore/search?q=lyon%20AND%20(")
    assert "Search syntax error" in page.inner_text(".message-error")
    shoot(page, "search-error", full_page=False)


def test_missing_thread_in_datasettes_layout(demo: str, page: Any) -> None:
    response = page.goto(demo + "/-/memstore/demo/threads/nope")
    assert response is not None and response.status == 404
    assert page.title() == "No such conversation"
    assert page.locator("footer").count() == 1 and page.locator("nav").count() >= 1
    page.get_by_role("link", name="Back to the agent memory overview").click()
    page.wait_for_url("**/-/memstore")
    shoot(page, "missing", full_page=False)
