"""Each extra, installed alone from the wheel into a fresh venv, runs its README section there:
what a user does who reads one section and installs what it says."""

from __future__ import annotations

import os
import subprocess
import venv
from pathlib import Path

import pytest

from .test_docs import SECTIONS

#: extra -> the README sections (or commands) it must make work on its own.
EXTRAS = {
    "models": ["Typed records"],
    "vectors": ["Vector memory"],
    "langgraph": ["LangGraph"],
    "langchain": ["LangChain"],
    "agents": ["OpenAI Agents SDK"],
    "mcp": ["Agent memory over MCP"],
    "postgres": ["PostgreSQL"],  # on a fresh database of the suite's server
    "explorer": [],  # the demo: below
}


def fresh_venv(path: Path, requirement: str) -> Path:
    venv.create(path, with_pip=True)
    python = path / "bin" / "python"
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", requirement],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    return python


@pytest.mark.parametrize("extra", list(EXTRAS))
def test_an_extra_alone_runs_its_readme_section(
    wheel: Path, tmp_path: Path, extra: str, request: pytest.FixtureRequest
) -> None:
    python = fresh_venv(tmp_path / "venv", f"{wheel}[{extra}]")
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ)
    if extra == "postgres":
        env["MEMSTORE_PATH"] = request.getfixturevalue("pg_url")
    for heading in EXTRAS[extra]:
        code = "\n".join(block for _, block in SECTIONS[heading])
        ran = subprocess.run(
            [str(python), "-c", code],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            cwd=work,
            env=env,
        )
        assert ran.returncode == 0, f"{heading}: {ran.stderr[-3000:]}"
    if extra == "explorer":
        memstore = tmp_path / "venv" / "bin" / "memstore"
        demo = subprocess.run(
            [str(memstore), "demo", "demo.db", "--build-only"],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            cwd=work,
        )
        assert demo.returncode == 0, demo.stderr[-3000:]
        page = subprocess.run(
            [str(tmp_path / "venv" / "bin" / "datasette"), "demo.db", "--get", "/-/memstore"],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            cwd=work,
        )
        assert page.returncode == 0 and "<title>Agent memory</title>" in page.stdout, page.stderr


def test_the_extras_here_are_the_packages_extras() -> None:
    import tomllib

    from .conftest import ROOT

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # test and bench are the project's own: what its tests and benchmarks need
    assert set(declared["optional-dependencies"]) - {"test", "bench"} == set(EXTRAS)
