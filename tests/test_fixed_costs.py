"""The fixed costs of a run stay cut (issue 16): what the CLI imports up front, the Parquet
writer without pyarrow's Python converter (which imports pandas), the GC frozen only when
the CLI owns the process. Seconds are measured by benchmarks/fixed_costs.py, not here."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contextsort.formats.columns import table_from_rows

SRC = str(Path(__file__).resolve().parents[1] / "src")


def python(code: str) -> str:
    """stdout of `code` run in a fresh interpreter on this checkout's sources."""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": SRC, "PATH": ""})
    assert p.returncode == 0, p.stderr
    return p.stdout


HEAVY = ("matplotlib", "pandas", "faiss", "pyarrow", "tokenizers", "sklearn", "torch", "ray", "asyncio")


def test_cli_import_leaves_heavy_modules_to_the_stages():
    loaded = json.loads(python(f"import sys, json, contextsort.cli; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"))
    assert loaded == []


def test_progress_bar_does_not_import_asyncio():
    code = ("import sys; from contextsort.progress import progress, setup_logging; setup_logging(0)\n"
            "with progress(3, 'x') as bar: bar.update(3)\n"
            "print('asyncio' in sys.modules, 'tqdm' in sys.modules)")
    assert python(code).split() == ["False", "True"]


def test_flat_parquet_batch_written_without_pandas():
    code = ("import io, sys, pyarrow as pa, pyarrow.parquet as pq\n"
            "from contextsort.formats.columns import table_from_rows\n"
            "schema = pa.schema([('id', pa.int64()), ('text', pa.string()), ('score', pa.float64()), ('ok', pa.bool_()),"
            " ('none', pa.null()), ('position', pa.int64())])\n"
            "rows = [{'id': 1, 'text': 'a\\u00e9', 'score': 2, 'ok': True, 'position': 0}, {'id': None, 'text': None, 'score': 0.5, 'position': 1}]\n"
            "buf = io.BytesIO(); w = pq.ParquetWriter(buf, schema); w.write_table(table_from_rows(rows, schema)); w.close()\n"
            "print('pandas' in sys.modules)")
    assert python(code).strip() == "False"


def from_pylist_or_error(rows, schema):
    try:
        return pa.Table.from_pylist(rows, schema=schema)
    except (pa.ArrowException, OverflowError, TypeError, ValueError) as e:
        return type(e)


def same_as_from_pylist(rows, schema):
    want = from_pylist_or_error(rows, schema)
    try:
        got = table_from_rows(rows, schema)
    except (pa.ArrowException, OverflowError, TypeError, ValueError) as e:
        got = type(e)
    if isinstance(want, type):
        assert got is want
        return
    got.validate(full=True)
    assert got.schema == want.schema
    assert values(got) == values(want)
    buf = io.BytesIO()
    pq.write_table(got, buf)
    assert values(pq.read_table(io.BytesIO(buf.getvalue()))) == values(want)  # the file reads back as the rows


def values(table: pa.Table) -> str:
    """The table's values as text: NaN equals NaN, -0.0 differs from 0.0 (Table.equals says neither)."""
    return json.dumps(table.to_pylist(), default=str)


SCHEMA = pa.schema([("i", pa.int64()), ("f", pa.float64()), ("b", pa.bool_()), ("s", pa.string()), ("n", pa.null())])
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.fixed_dictionaries({}, optional={
    "i": st.none() | st.integers(-2**63, 2**63 - 1),
    "f": st.none() | st.integers(-2**53, 2**53) | st.floats(allow_nan=False),
    "b": st.none() | st.booleans(),
    "s": st.none() | TEXT,
    "n": st.none(),
    "extra": st.integers(),  # a key outside the schema: ignored by both
}), min_size=1, max_size=40))
def test_flat_columns_equal_from_pylist(rows):
    same_as_from_pylist(rows, SCHEMA)


@pytest.mark.parametrize("rows,schema", [
    ([{"i": True}, {"i": 2}], pa.schema([("i", pa.int64())])),  # a bool in an int64 column
    ([{"f": 2**53 + 1}], pa.schema([("f", pa.float64())])),  # an integer no double holds exactly
    ([{"i": 2**64}], pa.schema([("i", pa.int64())])),  # beyond int64
    ([{"s": "\ud800"}], pa.schema([("s", pa.string())])),  # a lone surrogate
    ([{"s": 5}], pa.schema([("s", pa.string())])),
    ([{"n": "x"}], pa.schema([("n", pa.null())])),
    ([{"d": {"a": 1, "b": [1, 2]}}, {"d": None}], pa.schema([("d", pa.struct([("a", pa.int64()), ("b", pa.list_(pa.int64()))]))])),
    ([{"l": [1.5, None]}], pa.schema([("l", pa.list_(pa.float64()))])),
    ([{"f": float("nan")}, {"f": float("inf")}, {"f": -0.0}], pa.schema([("f", pa.float64())])),
])
def test_other_values_convert_or_fail_as_from_pylist(rows, schema):
    same_as_from_pylist(rows, schema)


def test_cli_freezes_the_gc_only_when_it_owns_the_process(tmp_path):
    import gc

    from contextsort.cli import main

    before = gc.get_freeze_count()
    assert main(["report", str(tmp_path / "missing")]) == 2  # called as a function: the caller's GC is left alone
    assert gc.get_freeze_count() == before
    code = (f"import gc, sys; sys.argv = ['contextsort', 'report', {str(tmp_path / 'missing')!r}]\n"
            "from contextsort.cli import main\nstatus = main()\nprint(status, gc.get_freeze_count() > 1000)")
    assert python(code).split() == ["2", "True"]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4), max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(TEXT, JSON_VALUES, max_size=5), max_size=5))
def test_jsonl_lines_are_json_dumps(rows):
    from contextsort.formats import jsonl_bytes

    assert jsonl_bytes(rows) == "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows).encode("utf-8")
