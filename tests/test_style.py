"""The code passes ruff and strict mypy; the public surface is documented."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import memstore

from .conftest import ROOT


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["mypy"],
    ],
    ids=["ruff", "ruff-format", "mypy-strict"],
)
def test_checker_passes(command: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_public_names_have_docstrings() -> None:
    for name in memstore.__all__:
        obj = getattr(memstore, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__, name
            for attr, member in vars(obj).items():
                if not attr.startswith("_") and inspect.isfunction(member):
                    assert member.__doc__, f"{name}.{attr}"


def test_exceptions_are_one_family() -> None:
    errors = [getattr(memstore, n) for n in memstore.__all__ if n.endswith("Error")]
    assert all(issubclass(e, memstore.MemstoreError) for e in errors)
    assert len(errors) >= 6
