"""The README keeps its promises: the two commands, runnable examples, documented names.

Every section of the README runs here on its own, in an empty directory, its
Python blocks in order, as a reader trying one section would.
Where a line is one expression (or ``name = expression``) and its comment
starts with a Python literal (``# 7: how many went``, ``# ["acme"]``), the
value must equal that literal: the README says what calls return, and this
keeps it true.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

import memstore

from .conftest import CIPHERS, ROOT

README = (ROOT / "README.md").read_text()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


def test_readme_opens_with_a_paragraph_and_the_demo_and_test_commands() -> None:
    blocks = re.findall(r"```bash\n(.+?)\n```", README, re.S)
    demo, tests = blocks[0].strip(), blocks[1].strip()
    assert README.index(tests) < 1200
    assert README.split("\n\n")[1].startswith("memstore is durable memory for AI agents")
    assert "pip install" in demo and demo.endswith("memstore demo")
    assert "pip install" in tests and "pytest" in tests
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci


def test_readme_has_a_table_of_contents_that_resolves() -> None:
    anchors = set()
    for heading in re.findall(r"^#{2,4} (.+)$", README, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchors.add(slug)
    links = re.findall(r"\]\(#([\w\-]+)\)", README)
    assert len(links) > 20
    assert not [link for link in links if link not in anchors]


def literal_claim(comment: str) -> tuple[bool, Any]:
    """The Python literal a comment starts with, if it starts with one."""
    text = comment.lstrip("#").strip()
    cuts = [len(text)] + [i for i in range(len(text) - 1, 0, -1) if text[i] in ":;,"]
    for cut in cuts:
        try:
            return True, ast.literal_eval(text[:cut].strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return False, None


def comments_by_line(block: str) -> dict[int, str]:
    tokens = tokenize.generate_tokens(io.StringIO(block).readline)
    return {t.start[0]: t.string for t in tokens if t.type == tokenize.COMMENT}


def run_block(block: str, number: int, namespace: dict[str, Any]) -> int:
    """Run one block statement by statement; check literal claims; return how many."""
    tree = ast.parse(block)
    comments = comments_by_line(block)
    ends = [node.end_lineno for node in tree.body]
    checked = 0
    for node in tree.body:
        where = f"README.md python block {number}"
        if isinstance(node, ast.Expr):  # evaluated once, for its value
            # dont_inherit: the README's code runs as a user's would, without this file's
            # `from __future__ import annotations` (LangGraph reads the annotations).
            value = eval(
                compile(ast.Expression(node.value), where, "eval", dont_inherit=True), namespace
            )
        else:
            module = ast.Module(body=[node], type_ignores=[])
            exec(compile(module, where, "exec", dont_inherit=True), namespace)
        line = node.end_lineno or 0
        if line not in comments or ends.count(line) > 1:
            continue
        if isinstance(node, ast.Assign):
            if len(node.targets) != 1 or not isinstance(node.targets[0], ast.Name):
                continue
            value = namespace[node.targets[0].id]
        elif not isinstance(node, ast.Expr):
            continue
        found, claim = literal_claim(comments[line])
        if found:
            assert value == claim, f"block {number}, line {line}: {value!r} is not {claim!r}"
            checked += 1
    return checked


def test_quickstart_is_short_and_prints_what_it_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    quickstart = PYTHON_BLOCKS[0]
    assert len(quickstart.splitlines()) <= 20
    out = io.StringIO()
    with redirect_stdout(out):
        exec(compile(quickstart, "README.md quickstart", "exec"), {})
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["tool timeout on search", "1"]
    assert lines[2] == "e1 tool timeout on [search]" and "[search]" in lines[3]
    with memstore.Store(tmp_path / "agent.db") as store:
        assert store.check() == [] and store.conversations().thread("chat-1").title


def sections() -> dict[str, list[tuple[int, str]]]:
    """The README's sections (## and ###) that hold Python: heading -> numbered blocks."""
    found: dict[str, list[tuple[int, str]]] = {}
    heading, number = "", 0
    for part in re.split(r"^(#{2,3} [^\n]+)$|```python\n(.*?)```", README, flags=re.M | re.S):
        if part is None:
            continue
        if re.match(r"#{2,3} ", part):
            heading = part.lstrip("# ").strip()
        elif part in PYTHON_BLOCKS:
            number += 1
            found.setdefault(heading, []).append((number, part))
    return found


SECTIONS = sections()


@pytest.mark.parametrize("heading", list(SECTIONS))
def test_each_section_runs_on_its_own_and_returns_what_it_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, heading: str, request: pytest.FixtureRequest
) -> None:
    """As a reader would try one section: in an empty directory, after nothing else."""
    monkeypatch.chdir(tmp_path)
    if heading == "PostgreSQL":  # a fresh database on the suite's server
        monkeypatch.setenv("MEMSTORE_PATH", request.getfixturevalue("pg_url"))
    if heading == "Encryption at rest":
        if not CIPHERS:
            pytest.skip("needs apsw-sqlite3mc (.ci/run's .venv-encrypted runs it)")
        monkeypatch.setenv("MEMSTORE_KEY", "a new passphrase")  # the section reads it
    namespace: dict[str, Any] = {"__name__": "readme"}
    with redirect_stdout(io.StringIO()):
        for number, block in SECTIONS[heading]:
            run_block(block, number, namespace)
    for value in namespace.values():  # what the section opened, closed as a reader's exit would
        if isinstance(value, memstore.Store):
            value.close()


def test_the_readme_says_what_calls_return_often() -> None:
    claims = 0
    for block in PYTHON_BLOCKS:
        claims += sum(literal_claim(c)[0] for c in comments_by_line(block).values())
    assert len(PYTHON_BLOCKS) >= 20 and claims >= 50


def test_literal_claims_are_read_as_meant() -> None:
    assert literal_claim('# {"fts_indexes": 3}: planner statistics') == (True, {"fts_indexes": 3})
    assert literal_claim("# 7: how many went") == (True, 7)
    assert literal_claim("# True; a Checkpoint, or None") == (True, True)
    assert literal_claim("# a new ULID") == (False, None)
    assert literal_claim('# {"hits": 1, "bytes": 16}, from every process') == (
        True,
        {"hits": 1, "bytes": 16},
    )


OWNERS = {
    "events": memstore.Collection,
    "typed": memstore.Collection,
    "collection": memstore.Collection,
    "store": memstore.Store,
    "log": memstore.EventLog,
    "conv": memstore.Conversations,
    "cp": memstore.Checkpoints,
    "g": memstore.Graph,
    "cache": memstore.Cache,
    "notes": memstore.Collection,
    "tenants": memstore.Tenants,
    "memstore": memstore,
}


def test_methods_named_in_the_readme_exist() -> None:
    calls = re.findall(rf"\b({'|'.join(OWNERS)})\.([A-Za-z_]+)\(", README)
    assert len(calls) > 60
    for owner, name in calls:
        assert hasattr(OWNERS[owner], name), f"{owner}.{name}"


def test_every_public_name_is_in_the_readme() -> None:
    for name in memstore.__all__:
        if name.startswith("_") or name in {"APPLICATION_ID", "COMPRESS_ABOVE", "SCHEMA_VERSION"}:
            continue
        assert f"{name}" in README, name


def test_every_exception_is_documented() -> None:
    for name in memstore.__all__:
        if name.endswith("Error"):
            assert f"`{name}`" in README, name


def test_no_install_line_names_another_projects_package() -> None:
    """`memstore` on the package index is an unrelated project: every install line of the
    README installs this checkout (or names agent-memstore), and so do the errors."""
    targets = re.findall(r"pip install\s+(?:--\S+\s+)*(\S+)", README)  # what each installs
    assert len(targets) >= 8
    for target in targets:  # this checkout, or apsw with ciphers in apsw's place
        assert re.match(r"'?\.(\[|\s|$)|'?agent-memstore|'?\.\[|'apsw-sqlite3mc", target), target
    assert not re.search(r"pip install '?memstore\b", README)
    sources = [ROOT / "memstore.py", *ROOT.glob("*/memstore_*.py")]
    for source in sources:
        assert not re.search(r"pip install '?memstore\b", source.read_text()), source
