"""The demo store: an agent planning a trip, with every kind of memory memstore keeps.

``memstore demo`` builds it and opens it in Datasette; tests and the README
use it as a realistic store. ``build(path)`` is deterministic (a fixed seed),
so the demo and its tests always see the same data, apart from the times,
which end at the moment it is built.
"""

from __future__ import annotations

import importlib.util
import os
import random
import re
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import memstore

#: What the agent has noted over earlier trips: the demo's vector memory.
NOTES = [
    ("travel", "The user prefers trains to planes for trips under five hours."),
    ("travel", "Night trains to Italy sell out a month ahead in summer."),
    ("travel", "Book the train first, then a hotel near the arrival station."),
    ("travel", "Rail passes are cheaper than single tickets for three trips or more."),
    ("food", "The user is vegetarian and likes ramen and Lebanese food."),
    ("food", "Lyon's bouchons serve heavy meat dishes: look for vegetarian menus."),
    ("food", "Lunch near Part-Dieu: a ramen place opens at noon."),
    ("weather", "Lyon is hot in July; pack light clothes and water."),
    ("weather", "Check the forecast two days before: storms delay trains."),
    ("work", "The user's team meets on Mondays at 10:00, Paris time."),
    ("work", "Expense reports need the hotel invoice as a PDF."),
    ("work", "The user works from the train when there is wifi."),
]


def word_hash(texts: list[str]) -> list[list[float]]:
    """A toy embedding for the demo (memstore ships no model): words hashed into 64 counts."""
    vectors = []
    for text in texts:
        vector = [0.0] * 64
        for word in re.findall(r"\w+", text.lower()):
            vector[zlib.crc32(word.encode()) % 64] += 1.0
        vectors.append(vector)
    return vectors


def build(path: str | os.PathLike[str]) -> None:
    """Fill a store with an agent working through a few tasks: every kind of memory.

    Deterministic (a fixed seed), so the demo and its tests always see the same data.
    """
    rnd = random.Random(42)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)
    with memstore.Store(path) as store:
        tasks = store.collection(
            "tasks", fields={"status": str, "priority": int}, fts=["title", "notes"], history=True
        )
        decisions = store.collection(
            "decisions",
            fields={"task": str, "choice": str, "confidence": float},
            fts=["rationale"],
        )
        notes = store.collection(
            "notes",
            fields={"topic": str},
            fts=["text"],
            ttl=timedelta(days=30),
            # Vector memory, when numpy is there (the explorer extra installs it).
            vectors=(
                {"dim": 64, "model": "demo-word-hash-64", "embed": word_hash}
                if importlib.util.find_spec("numpy")
                else None
            ),
        )
        notes.put_many(
            (f"note-{i}", {"topic": topic, "text": text})
            for i, (topic, text) in enumerate(NOTES, 1)
        )
        plan = [
            ("t-1", "Book a train from Paris to Lyon", "high"),
            ("t-2", "Find a hotel near Lyon Part-Dieu", "medium"),
            ("t-3", "Summarise the weather for the trip", "low"),
        ]
        for task_id, title, level in plan:
            priority = {"high": 1, "medium": 2, "low": 3}[level]
            tasks.put(task_id, {"title": title, "status": "todo", "priority": priority})
        log = store.event_log("trip-planner")
        conv = store.conversations()
        cp = store.checkpoints()
        moment = start
        for n, (task_id, title, _) in enumerate(plan):
            tasks.put(
                task_id,
                {
                    "title": title,
                    "status": "in_progress",
                    "priority": n + 1,
                    "notes": f"Started {title.lower()}.",
                },
            )
            log.append(
                {
                    "id": f"{task_id}-start",
                    "kind": "task_started",
                    "payload": {"task": task_id, "title": title},
                    "at": moment,
                }
            )
            thread = conv.create_thread(
                f"chat-{task_id}",
                title=title,
                user_id="alice",
                agent_id="trip-planner",
                tags=["travel", task_id],
            )
            conv.add_message(thread, "system", "You are a careful travel planning agent.")
            conv.add_message(thread, "user", f"Please {title[0].lower() + title[1:]}.")
            state: dict[str, Any] = {"task": task_id, "step": 0, "tools_used": [], "findings": []}
            cp.save(thread, state, tags=["start"])
            for step in range(1, 7):
                moment += timedelta(minutes=rnd.randrange(3, 25))
                tool = rnd.choice(["web_search", "train_api", "hotel_api", "weather_api"])
                call_id = f"{task_id}-call-{step}"
                log.append(
                    {
                        "id": call_id,
                        "kind": "tool_call",
                        "at": moment,
                        "payload": {"task": task_id, "tool": tool, "step": step},
                    }
                )
                tokens_in, tokens_out = rnd.randrange(600, 3000), rnd.randrange(40, 400)
                conv.add_message(
                    thread,
                    "assistant",
                    None,
                    tool_calls=[{"id": call_id, "name": tool, "arguments": {"step": step}}],
                    usage={
                        "input_tokens": tokens_in,
                        "output_tokens": tokens_out,
                        "model": "planner-large",
                        "cost": round(tokens_in * 3e-6 + tokens_out * 1.5e-5, 6),
                    },
                )
                if rnd.random() < 0.25:
                    log.append(
                        {
                            "kind": "error",
                            "at": moment + timedelta(seconds=20),
                            "payload": {
                                "task": task_id,
                                "tool": tool,
                                "message": f"{tool} timed out, retrying",
                            },
                        }
                    )
                finding = f"{tool} result {step} for {task_id}"
                conv.add_message(thread, "tool", {"tool": tool, "result": finding}, name=tool)
                log.append(
                    {
                        "kind": "tool_result",
                        "at": moment + timedelta(seconds=40),
                        "payload": {"task": task_id, "tool": tool, "summary": finding},
                    }
                )
                state = {
                    **state,
                    "step": step,
                    "tools_used": [*state["tools_used"], tool],
                    "findings": [*state["findings"], finding],
                }
                cp.save(thread, state, metadata={"tool": tool})
            choice = {
                "t-1": "TGV 9:04, 2nd class",
                "t-2": "Hotel du Rhône, 2 nights",
                "t-3": "Mild, light rain on Saturday",
            }[task_id]
            decisions.add(
                {
                    "task": task_id,
                    "choice": choice,
                    "confidence": round(0.6 + rnd.random() * 0.35, 2),
                    "rationale": f"Chosen after {len(state['findings'])} tool calls: "
                    "cheapest option that arrives before noon.",
                }
            )
            log.append(
                {
                    "kind": "decision",
                    "at": moment + timedelta(minutes=1),
                    "payload": {"task": task_id, "choice": choice},
                }
            )
            conv.add_message(
                thread,
                "assistant",
                f"Done: {choice}.",
                usage={
                    "input_tokens": 1800,
                    "output_tokens": 120,
                    "model": "planner-small",
                    "cost": 0.0012,
                },
            )
            tasks.put(
                task_id,
                {"title": title, "status": "done", "priority": n + 1, "notes": f"Done: {choice}."},
            )
            log.append(
                {
                    "id": f"{task_id}-done",
                    "kind": "task_done",
                    "at": moment + timedelta(minutes=2),
                    "payload": {"task": task_id},
                }
            )
            notes.put(
                f"note-{task_id}",
                {
                    "topic": "travel",
                    "text": f"Lesson from {task_id}: check the train API before the hotel API.",
                },
            )
            moment += timedelta(minutes=30)
        # A branch tried and merged, another abandoned.
        branch = conv.branch("chat-t-1", at=4, title="Try a cheaper train")
        conv.add_message(branch, "user", "Is there anything cheaper, even if slower?")
        conv.add_message(
            branch,
            "assistant",
            "The Ouigo at 7:52 is 19 euros cheaper.",
            usage={
                "input_tokens": 950,
                "output_tokens": 60,
                "model": "planner-small",
                "cost": 0.0007,
            },
        )
        conv.merge(branch)
        dead_end = conv.branch("chat-t-2", at=3, title="Look for apartments instead")
        conv.add_message(dead_end, "assistant", "Searching short-term rentals...")
        conv.abandon(dead_end, reason="the user wants a hotel")
        # Checkpoints: a branch of task 1's state.
        first = cp.history("chat-t-1")[-2]
        cp.branch(first.id, name="cheaper")
        cp.save("chat-t-1", {**first.state, "step": 2, "budget": "low"}, branch="cheaper")
        # Facts.
        g = store.graph("facts")
        for node, kind in [
            ("alice", "person"),
            ("paris", "city"),
            ("lyon", "city"),
            ("tgv-9-04", "train"),
            ("hotel-du-rhone", "hotel"),
            ("part-dieu", "station"),
        ]:
            g.add_node(node, kind, {"label": node.replace("-", " ").title()})
        for source, target, relation in [
            ("alice", "lyon", "travels_to"),
            ("alice", "paris", "lives_in"),
            ("tgv-9-04", "paris", "departs_from"),
            ("tgv-9-04", "part-dieu", "arrives_at"),
            ("part-dieu", "lyon", "located_in"),
            ("hotel-du-rhone", "lyon", "located_in"),
        ]:
            g.add_edge(source, target, relation)
        g.set_profile("user:alice", {"prefers": ["trains", "quiet hotels"], "budget": "medium"})
        g.set_profile("agent:trip-planner", {"model": "planner-large", "style": "careful"})
        cache = store.cache("llm", ttl=timedelta(hours=12))
        for i in range(8):
            cache.set(f"prompt:{i}", {"completion": f"cached answer {i}"})
        for i in range(12):
            cache.get(f"prompt:{i % 10}")
        cache.stats()
