"""Reading the store back: `DocStore.texts` (one decode per range, cut at character offsets)
gives exactly the per-document decode `DocStore.text`, and both give the input's text."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contextsort.corpus import DocStore
from contextsort.parallel_ingest import ingest_inputs

# ASCII, 2-, 3- and 4-byte characters and blanks (lone surrogates are rejected at ingest)
TEXTS = st.text(alphabet=st.sampled_from(["a", "Z", " ", "\n", "\u00e9", "\u00a3", "\u2028", "\u20ac", "\U0001f600"]),
                min_size=0, max_size=12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(TEXTS, min_size=1, max_size=25), data=st.data())
def test_texts_of_a_range_equal_each_text(tmp_path_factory, texts, data):
    tmp = tmp_path_factory.mktemp("store")
    path = tmp / "in.jsonl"
    path.write_text("".join(json.dumps({"id": k, "text": t}) + "\n" for k, t in enumerate(texts)), encoding="utf-8")
    res = ingest_inputs([str(path)], tmp / "store", tmp / "parts")
    store = DocStore(tmp / "store")
    kept = [t for t in texts if t.strip()]  # blank texts are rejected at ingest
    assert len(store) == len(kept) and len(res.rejects) == len(texts) - len(kept)
    one_by_one = [store.text(i) for i in range(len(store))]
    assert one_by_one == kept
    a = data.draw(st.integers(0, len(store)))
    b = data.draw(st.integers(a, len(store)))
    assert store.texts(a, b) == kept[a:b]
    assert store.texts(0, len(store)) == kept
