"""Typed records: a collection with a pydantic model."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import BaseModel, ConfigDict, Field

import memstore


class Decision(BaseModel):
    id: str
    choice: str
    confidence: float = Field(ge=0, le=1)
    at: datetime
    reasons: list[str] = []


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    n: int


def decision(i: int = 1, **extra: object) -> Decision:
    return Decision(
        id=f"d{i}",
        choice="retry",
        confidence=0.5,
        at=datetime(2026, 11, 21, tzinfo=UTC),
        **extra,
    )  # type: ignore[arg-type]


def test_models_round_trip(store: memstore.Store) -> None:
    decisions = store.collection("decisions", model=Decision, fields={"choice": str})
    decisions.put("d1", decision())
    got = decisions.get("d1")
    assert isinstance(got, Decision)
    assert got.at == datetime(2026, 11, 21, tzinfo=UTC)
    assert decisions.query({"choice": "retry"}) == [got]
    raw = store.connection.execute("SELECT body FROM decisions").fetchall()[0][0]
    assert '"at":"2026-11-21T00:00:00Z"' in raw


def test_unknown_fields_survive(store: memstore.Store) -> None:
    store.collection("decisions").put(
        "d1",
        {
            "id": "d1",
            "choice": "stop",
            "confidence": 1,
            "at": "2026-11-21T00:00:00Z",
            "added_by_v2": {"x": 1},
        },
    )
    typed = store.collection("decisions", model=Decision)
    got = typed.get("d1")
    assert isinstance(got, Decision)
    got.choice = "go"
    typed.put("d1", got)
    assert store.collection("decisions").get("d1")["added_by_v2"] == {"x": 1}
    assert store.collection("decisions").get("d1")["choice"] == "go"


def test_forbid_models_still_keep_unknown_fields(store: memstore.Store) -> None:
    store.collection("s").put("a", {"id": "a", "n": 1, "later": True})
    typed = store.collection("s", model=Strict)
    got = typed.get("a")
    assert isinstance(got, Strict)
    typed.put("a", got)
    assert store.collection("s").get("a") == {"id": "a", "n": 1, "later": True}


def test_dicts_are_validated_and_nothing_written_on_error(store: memstore.Store) -> None:
    decisions = store.collection("decisions", model=Decision)
    decisions.put(
        "ok", {"id": "ok", "choice": "a", "confidence": 0.1, "at": "2026-11-21T00:00:00Z"}
    )
    with pytest.raises(memstore.ValidationError, match="confidence"):
        decisions.put(
            "bad", {"id": "bad", "choice": "a", "confidence": 7, "at": "2026-11-21T00:00:00Z"}
        )
    with pytest.raises(memstore.ValidationError):
        decisions.put_many([decision(2), {"id": "x"}], key="id")
    with pytest.raises(memstore.ValidationError):
        decisions.put("s", "not a record")
    assert decisions.keys() == ["ok"]


def test_put_many_with_models(store: memstore.Store) -> None:
    decisions = store.collection("decisions", model=Decision, fts=["reasons"])
    assert (
        decisions.put_many(
            [decision(i, reasons=["tool failed twice"]) for i in range(100)], key="id"
        )
        == 100
    )
    assert decisions.count() == 100
    hits = decisions.search("failed", limit=5)
    assert len(hits) == 5 and isinstance(hits[0].record, Decision)


def test_model_must_be_pydantic(store: memstore.Store) -> None:
    with pytest.raises(memstore.ValidationError, match="pydantic"):
        store.collection("x", model=dict)
