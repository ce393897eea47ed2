"""End to end: every input record is in exactly one of ordered.jsonl and removed.jsonl,
the counts add up, and an interrupted run resumes to a clean run's outputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import contextsort

SRC = str(Path(__file__).resolve().parents[1] / "src")

BAD_LINES = [
    "{broken",  # malformed JSON
    "[1, 2]",  # not an object
    '{"id": "x", "text": 5}',  # text not a string
    '{"id": "y", "text": "   "}',  # empty text
    '{"id": "z"}',  # no text field
    '{"id": "s", "text": "lone \\ud800 surrogate"}',
]


@pytest.fixture(scope="module")
def texts():
    from contextsort.sample import bbc_news_path

    out = []
    for p in sorted(bbc_news_path().rglob("*.txt"))[::40]:
        try:
            out.append(p.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            continue
    return out[:50]


def account(run: Path, n_lines: int) -> None:
    """Each input line (1-based) is written once: kept (id g<line>), a duplicate, or a reject with its line."""
    seen: dict[int, str] = {}

    def mark(line: int, where: str) -> None:
        assert line not in seen, (line, seen[line], where)
        seen[line] = where

    for row in map(json.loads, (run / "ordered.jsonl").read_text().splitlines()):
        mark(int(row["id"][1:]), "ordered")
    for row in map(json.loads, (run / "removed.jsonl").read_text().splitlines()):
        if row["reason"] == "duplicate":
            mark(int(row["id"][1:]), "duplicate")
        else:
            mark(int(row["line"]), row["reason"])
    assert sorted(seen) == list(range(1, n_lines + 1))
    counts = json.loads((run / "manifest.json").read_text())["counts"]
    assert counts["adds_up"] and counts["records_read"] == n_lines


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=st.lists(st.one_of(st.integers(0, 49).map(lambda i: ("good", i)), st.sampled_from(BAD_LINES).map(lambda b: ("bad", b))),
                     min_size=8, max_size=40))
def test_every_record_ends_in_exactly_one_place(tmp_path_factory, texts, plan):
    """Random mixes of good records, repeated texts (exact duplicates) and bad lines."""
    d = tmp_path_factory.mktemp("mix")
    lines = []
    for n, (kind, x) in enumerate(plan, start=1):
        lines.append(json.dumps({"id": f"g{n}", "text": texts[x]}) if kind == "good" else x)
    if all(kind == "bad" for kind, _ in plan):
        lines[0] = json.dumps({"id": "g1", "text": texts[0]})
    path = d / "in.jsonl"
    path.write_text("\n".join(lines) + "\n")
    contextsort.run([path], d / "run", format=["jsonl"], report=False)
    account(d / "run", len(lines))


def test_killed_at_random_moments_then_resumed_equals_a_clean_run(tmp_path, texts):
    lines = [json.dumps({"id": f"g{n}", "text": t}) for n, t in enumerate(texts + texts[:5], start=1)] + ["{broken"]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n")
    env = {**os.environ, "PYTHONPATH": SRC}
    args = [sys.executable, "-m", "contextsort.cli", "run", str(path), "-q", "--no-report"]
    assert subprocess.run(args + ["-o", str(tmp_path / "ref")], env=env, capture_output=True).returncode == 0
    run = tmp_path / "run"
    for delay in (1.0, 2.0, 3.5):
        p = subprocess.Popen(args + ["-o", str(run)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert subprocess.run(args + ["-o", str(run)], env=env, capture_output=True).returncode == 0
    for name in ("ordered.jsonl", "ordered.parquet", "removed.jsonl"):
        assert (run / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name
    account(run, len(lines))
