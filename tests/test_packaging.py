"""The wheel installs into a fresh venv with its schema files and py.typed, and works there."""

from __future__ import annotations

import subprocess
import venv
import zipfile
from pathlib import Path

SMOKE = """
import pathlib, sys, memstore
assert "site-packages" in memstore.__file__, memstore.__file__
package = pathlib.Path(memstore.__file__).parent
assert (package / "py.typed").exists()
assert sorted(p.name for p in (package / "sql").glob("*.sql")) == sorted(
    p.name for p in memstore.SQL_DIR.glob("*.sql"))
with memstore.Store(sys.argv[1]) as store:
    notes = store.collection("notes", fields={"kind": str}, fts=["text"])
    notes.put("a", {"kind": "smoke", "text": "installed from the wheel"})
    assert [h.key for h in notes.search("wheel")] == ["a"]
    assert store.schema_version == memstore.SCHEMA_VERSION
assert not [m for m in sys.modules if m.startswith(("click", "memstore_"))], "plugins loaded"
import importlib.util, memstore_cli, memstore_demo, memstore_legacy
for module in (memstore_cli, memstore_demo, memstore_legacy):
    assert "site-packages" in module.__file__, module.__file__
# Each framework integration needs its extra to import; the wheel holds them all.
for extra in ("memstore_langgraph", "memstore_langchain", "memstore_agents", "memstore_mcp"):
    assert importlib.util.find_spec(extra), extra
plugin = importlib.util.find_spec("memstore_datasette")  # imports datasette: not installed here
assert (pathlib.Path(plugin.origin).parent / "memstore_templates").is_dir()
from importlib.metadata import entry_points, metadata
plugins = [e.value for e in entry_points(group="datasette") if e.name == "memstore"]
assert plugins == ["memstore_datasette"], plugins
assert metadata("agent-memstore")["License-Expression"] == "MIT"
print("smoke ok")
"""


def test_wheel_contents(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"memstore/__init__.py", "memstore/py.typed", "memstore/sql/0001_core.sql"} <= names
    assert {
        "memstore_cli.py",
        "memstore_demo.py",
        "memstore_legacy.py",
        "memstore_langgraph.py",
        "memstore_langchain.py",
        "memstore_agents.py",
        "memstore_mcp.py",
        "memstore_datasette/__init__.py",
        "memstore_datasette/memstore_templates/memstore_base.html",
    } <= names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not [n for n in names if n.startswith(("tests/", "bench/", "sql/"))]


def test_wheel_works_in_fresh_venv(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    result = subprocess.run(
        [str(python), "-c", SMOKE, str(tmp_path / "smoke.db")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "smoke ok"
    command = subprocess.run(
        [str(env_dir / "bin" / "memstore"), "--db", str(tmp_path / "smoke.db"), "collections"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert command.returncode == 0 and command.stdout == "notes\t1\n", command.stderr
