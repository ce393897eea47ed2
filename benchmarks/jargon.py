"""Reader for the Jargon File in dictd format (Debian package `dict-jargon`), for benchmarks and tests.

The file is not committed: install it with `apt-get install dict-jargon`. Each entry's
`{term}` cross-references give a ground truth for "related": two documents are linked
when either one references the other's headword. `link_rate(order)` is the share of
consecutive documents that are linked.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DICTD_DIR = Path("/usr/share/dictd")
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_VALUE = {c: i for i, c in enumerate(B64)}
_REF = re.compile(r"\{([^{}]+)\}")


class JargonUnavailable(Exception):
    pass


def _b64(s: str, where: str) -> int:
    v = 0
    for c in s:
        if c not in _B64_VALUE:
            raise ValueError(f"{where}: bad base64 digit {c!r} in {s!r}")
        v = v * 64 + _B64_VALUE[c]
    return v


def _norm(term: str) -> str:
    return " ".join(term.split()).lower()


@dataclass
class Jargon:
    headwords: list[str]  # entry name, as written in the index (lower-case)
    texts: list[str]  # headword line + body, as stored
    refs: list[np.ndarray]  # positions of the entries each entry references (resolved {terms})

    def linked(self) -> set[tuple[int, int]]:
        """Undirected linked pairs (a < b)."""
        out = set()
        for a, rs in enumerate(self.refs):
            for b in rs:
                if a != b:
                    out.add((min(a, int(b)), max(a, int(b))))
        return out

    def link_rate(self, order) -> float:
        """Share of consecutive pairs in `order` (positions) whose documents reference each other."""
        order = np.asarray(order, dtype=np.int64)
        if len(order) < 2:
            return 0.0
        links = self.linked()
        hits = sum((min(a, b), max(a, b)) in links for a, b in zip(order[:-1].tolist(), order[1:].tolist()))
        return hits / (len(order) - 1)


def read_jargon(directory: Path = DICTD_DIR, name: str = "jargon") -> Jargon:
    """Read `<name>.index` + `<name>.dict.dz` (dictd: headword TAB base64 offset TAB base64 length)."""
    index = Path(directory) / f"{name}.index"
    data = Path(directory) / f"{name}.dict.dz"
    if not index.exists() or not data.exists():
        raise JargonUnavailable(f"{index} / {data} not found: apt-get install dict-jargon")
    with gzip.open(data, "rb") as fh:  # dictzip is gzip-compatible
        blob = fh.read()
    heads, texts = [], []
    for lineno, line in enumerate(index.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split("\t")
        if len(parts) != 3:
            raise ValueError(f"{index}:{lineno}: expected 3 tab-separated fields, got {len(parts)}")
        head = parts[0]
        if head.startswith("00-database") or head.startswith("00database"):
            continue
        off, ln = _b64(parts[1], f"{index}:{lineno}"), _b64(parts[2], f"{index}:{lineno}")
        heads.append(head)
        texts.append(blob[off : off + ln].decode("utf-8").strip())
    pos = {_norm(h): i for i, h in enumerate(heads)}
    refs = []
    for t in texts:
        r = {pos[_norm(m)] for m in _REF.findall(t) if _norm(m) in pos}
        refs.append(np.asarray(sorted(r), dtype=np.int64))
    return Jargon(heads, texts, refs)


def write_jsonl(jargon: Jargon, path: Path) -> Path:
    """The entries as a contextsort input (id = headword)."""
    import json

    with open(path, "w", encoding="utf-8") as fh:
        for h, t in zip(jargon.headwords, jargon.texts):
            fh.write(json.dumps({"id": h, "text": t}, ensure_ascii=False) + "\n")
    return path
