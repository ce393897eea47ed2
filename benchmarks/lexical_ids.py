"""Lexical signal from token ids vs from text (scikit-learn HashingVectorizer), in the hybrid graph.

Each variant is one full default run (contextsort.Runner, hybrid similarity) in which only
the lexical vectors differ: `text` is today's HashingVectorizer (English stop-word list);
the `ids:*` variants build terms from the llama2 token ids of the same documents (`words`:
the lower-cased words the ids spell; `ids`: ids and adjacent-id pairs) and drop terms in more than `max_df` of the documents instead of a
stop-word list. Printed per corpus: label_agreement (BBC) or link_rate (Jargon), the
lexical kNN's recall@10 of the text variant's lexical neighbours, and the seconds to build
the lexical vectors from ids vs from text.

    PYTHONPATH=src python benchmarks/lexical_ids.py [--jargon-dir DIR] > lexical_ids.json

Settings were chosen on BBC; Jargon (Debian dict-jargon, `{ref}` links) is held out.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from jargon import DICTD_DIR, JargonUnavailable, read_jargon, write_jsonl  # noqa: E402

import contextsort.similarity as similarity  # noqa: E402
from contextsort.config import Config  # noqa: E402
from contextsort.corpus import DocStore  # noqa: E402
from contextsort.pack import encode_with_separators  # noqa: E402
from contextsort.runner import Runner  # noqa: E402
from contextsort.tokenizer import get_tokenizer  # noqa: E402

TEXT_VECTORS = similarity.lexical_vectors
VARIANTS = {
    "text": None,
    "ids:words:df0.5": dict(terms="words", max_df=0.5),
    "ids:words:df0.2": dict(terms="words", max_df=0.2),
    "ids:words:df1.0": dict(terms="words", max_df=1.0),
    "ids:ids+bigrams:df0.5": dict(terms="ids", max_df=0.5),
}


def id_vectors(opts: dict, timings: dict):
    """A stand-in for similarity.lexical_vectors that works from llama2 ids."""
    tok = get_tokenizer("llama2")

    def vectors(texts, weighting="tfidf", stop_words="english"):
        texts = list(texts)
        ids, seq = encode_with_separators(tok, texts, False, np.uint16)
        start = np.zeros(len(seq), np.int64)
        start[1:] = np.cumsum(seq)[:-1]
        t = time.perf_counter()
        x = similarity.lexical_vectors_from_ids(ids, start, seq - 1, tok, weighting, **opts)
        timings["vectors_s"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        TEXT_VECTORS(texts, weighting)
        timings["text_vectors_s"] = round(time.perf_counter() - t, 3)
        return x

    return vectors


def run(inputs, work: Path, opts: dict | None) -> tuple[dict, object]:
    timings: dict = {}
    similarity.lexical_vectors = TEXT_VECTORS if opts is None else id_vectors(opts, timings)
    cfg = Config()
    cfg.output.formats = ["jsonl"]
    cfg.similarity.similarity = "hybrid"
    res = Runner(inputs, work, cfg, quiet=True, overwrite=True).run()
    similarity.lexical_vectors = TEXT_VECTORS
    m, st = res.metrics, res.manifest["stages"]
    row = {"neighbors_s": st["neighbors"]["seconds"], **timings}
    if "label_agreement" in m:
        row["label_agreement"] = round(m["label_agreement"]["ordered"], 4)
    row["path_weight_ratio"] = round(m["path_weight"]["ratio"], 4)
    return row, res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work", default=None)
    ap.add_argument("--jargon-dir", default=str(DICTD_DIR))
    ap.add_argument("--only", default="", help="comma-separated corpora (bbc, jargon)")
    a = ap.parse_args()
    logging.disable(logging.INFO)
    from contextsort.sample import bbc_news_path

    only = set(filter(None, a.only.split(","))) or {"bbc", "jargon"}
    report: dict = {"variants": {k: v for k, v in VARIANTS.items()}, "corpora": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.work or tmp)
        corpora = {}
        if "bbc" in only:
            corpora["bbc"] = ([bbc_news_path()], None)
        if "jargon" in only:
            try:
                jar = read_jargon(Path(a.jargon_dir))
            except JargonUnavailable as e:
                report["corpora"]["jargon"] = {"skipped": str(e)}
            else:
                pos = {h: i for i, h in enumerate(jar.headwords)}

                def link(store: DocStore, order: np.ndarray, jar=jar, pos=pos) -> float:
                    return jar.link_rate([pos[store.record(int(i))["id"]] for i in order])

                corpora["jargon"] = ([write_jsonl(jar, work / "jargon.jsonl")], link)
        for name, (inputs, link) in corpora.items():
            table = {}
            for vname, opts in VARIANTS.items():
                row, res = run(inputs, work / name / vname.replace(":", "_"), opts)
                if link is not None:
                    order = np.load(res.run_dir / "order.npy") if (res.run_dir / "order.npy").exists() else None
                    if order is not None:
                        row["link_rate"] = round(link(DocStore(res.run_dir / "store"), order), 4)
                table[vname] = row
            report["corpora"][name] = table
            print(json.dumps({name: table}), file=sys.stderr)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
