"""The schema policy of the ordered outputs: a Parquet schema that never fails on valid JSON.

The schema is derived before writing from the kinds of value each field held at
ingest (corpus.FieldTypes), not inferred batch by batch, so a field whose records
disagree on type cannot fail the write stage after the expensive work. A field that
has no single Arrow type is written as JSON text: each non-null value as its JSON
encoding (`json.loads` gives the original back; the id 1 is "1" and the id "1" is
"\"1\"", so they stay distinct). The writers return which fields were converted, and why.

The order's position column is `position`, unless an input field already has that
name: then it is `contextsort_position` (the user's field is never overwritten).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..corpus import DocStore, FieldTypes

POSITION_FIELD = "position"
POSITION_FALLBACK = "contextsort_position"


@dataclass
class OutputSchema:
    """How the ordered documents are written: position column, Parquet schema, converted fields."""

    position_field: str
    schema: object  # pyarrow.Schema
    converted: dict[str, str] = field(default_factory=dict)  # field -> why it is written as JSON text

    def parquet_rows(self, rows: list[dict]) -> list[dict]:
        """Rows with the converted fields' values as JSON text (the rest untouched)."""
        if not self.converted:
            return rows
        conv = self.converted
        out = []
        for r in rows:
            r = dict(r)
            for k in conv:
                v = r.get(k)
                if v is not None:
                    r[k] = json.dumps(v, ensure_ascii=False)
            out.append(r)
        return out

    def info(self) -> dict:
        """For the manifest: the position column and the fields written as JSON text."""
        return {"position_field": self.position_field, "converted_fields": dict(self.converted)}


def position_field(types: FieldTypes) -> str:
    """`position`, or `contextsort_position` when an input field is already called `position`."""
    name = POSITION_FIELD if POSITION_FIELD not in types.kinds else POSITION_FALLBACK
    while name in types.kinds:
        name = "_" + name
    return name


def arrow_type(kinds: set[str], nested):
    """(Arrow type, None) for a field with these value kinds, or (string, why) when it must be JSON text."""
    import pyarrow as pa

    k = set(kinds) - {"null"}
    if not k:
        return pa.null(), None
    if k == {"bool"}:
        return pa.bool_(), None
    if k <= {"int", "int53"}:
        return pa.int64(), None
    if k <= {"int", "float"}:
        return pa.float64(), None
    if k == {"str"}:
        return pa.string(), None
    if k <= {"list", "dict"} and nested is not None:
        return nested, None
    if k == {"bigint"}:
        return pa.string(), "integers beyond the int64 range"
    if k <= {"list", "dict"}:
        return pa.string(), "nested values with no single Arrow type"
    if "float" in k and k <= {"int", "int53", "float"}:
        return pa.string(), "integers beyond 2**53 mixed with floats"
    return pa.string(), "mixed value types: " + ", ".join(sorted(k))


def output_schema(store: DocStore, label_field: str | None) -> OutputSchema:
    """The policy for writing this store's documents (same for every engine and shard)."""
    import pyarrow as pa

    types = store.field_types()
    pos = position_field(types)
    fields, converted = [], {}
    kinds = dict(types.kinds)
    if store.label_codes is not None and label_field and label_field not in kinds:
        kinds[label_field] = {"null"}
    for name, ks in kinds.items():
        t, why = arrow_type(ks, types.nested.get(name))
        if why:
            converted[name] = why
        fields.append(pa.field(name, t))
    fields.append(pa.field(pos, pa.int64()))
    return OutputSchema(pos, pa.schema(fields), converted)
