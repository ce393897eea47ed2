"""Outputs change only on purpose: BBC outputs equal the recorded ones.

The hashes in golden/ were recorded with commit aee3ccc (the last before the stage
redesign, which reproduced them exactly) by the command stored beside them; the file's
"history" lists each deliberate change since (which issue, why, which files). Parquet
files are compared by their rows read back with pyarrow (their bytes carry the pyarrow
version)."""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path

import pyarrow.parquet as pq

from contextsort.cli import main

GOLDEN = Path(__file__).parent / "golden" / "bbc_demo_L2048.sha256.json"


def table_hash(path: Path) -> str:
    rows = pq.read_table(path).to_pylist()
    return hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()


def test_bbc_outputs_identical_to_previous_design(tmp_path):
    golden = json.loads(GOLDEN.read_text())
    args = shlex.split(golden["command"])[1:]
    args[args.index("RUN")] = str(tmp_path / "run")
    assert main(args) == 0
    got = {}
    for name in golden["sha256"]:
        if name.startswith("table:"):
            got[name] = table_hash(tmp_path / "run" / name.removeprefix("table:"))
        else:
            got[name] = hashlib.sha256((tmp_path / "run" / name).read_bytes()).hexdigest()
    assert got == golden["sha256"]
