"""Peak memory of a default `contextsort run` at ~1M short documents (prints JSON).

The corpus (`build_corpus`): real sentences of the BBC News sample, recombined: each
document is 2-4 sentences drawn (seeded) from one article, in random order, with the
article's label; about 50 words per document. Real text, so the embeddings are real
wordllama vectors; recombination makes a million mostly distinct documents out of 2,225
articles (a few are exact or near duplicates, which dedup removes as it should).

The run is one `contextsort run` subprocess with default options. A sampler reads the
resident set size of the process and all its descendants from /proc every `--interval`
seconds and notes which stages the manifest has recorded so far, so each sample is
attributed to the stage running at that moment. Target (issue 16, item 6): peak RSS at
most 1.5x the size of the embeddings plus the kNN arrays (ids int64 + sims float32).

    PYTHONPATH=src nice -n 5 python benchmarks/memory.py --n 1000000 --work /work/cache/mem1m > memory.json
    PYTHONPATH=src python benchmarks/memory.py --work /work/cache/mem1m --report-only   # re-read a finished run

A run stopped and started again (same --work: the run directory resumes, finished stages
are skipped) adds a second sample file; each stage's peak is taken from the process that
finished it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def article_sentences() -> list[tuple[str, list[str]]]:
    """(label, sentences) per BBC article, sentences of at least 4 words."""
    from contextsort.sample import bbc_news_path

    out = []
    for f in sorted(bbc_news_path().rglob("*.txt")):
        text = f.read_text(encoding="utf-8", errors="replace")
        sents = [s.strip() for s in SENTENCE_END.split(" ".join(text.split())) if len(s.split()) >= 4]
        if len(sents) >= 2:
            out.append((f.parent.name, sents))
    return out


def build_corpus(path: Path, n: int, seed: int = 0) -> int:
    """Write n JSONL documents of 2-4 recombined sentences of one BBC article; returns n."""
    arts = article_sentences()
    rng = np.random.default_rng(seed)
    art = rng.integers(0, len(arts), n)
    size = rng.integers(2, 5, n)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for i in range(n):
            label, sents = arts[art[i]]
            pick = rng.choice(len(sents), min(int(size[i]), len(sents)), replace=False)
            fh.write(json.dumps({"id": i, "label": label, "text": " ".join(sents[j] for j in pick)}) + "\n")
    os.replace(tmp, path)
    return n


def tree_rss_bytes(pid: int) -> int:
    """Resident set size of pid and all its descendants (from /proc), in bytes."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as fh:
                total += int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except (OSError, ValueError):
            pass
    return total


def recorded_stages(manifest: Path) -> list[str]:
    try:
        return list(json.loads(manifest.read_text()).get("stages", {}))
    except (OSError, ValueError):
        return []


def run_sampled(corpus: Path, run: Path, interval: float, extra: list[str]) -> dict:
    """Run `contextsort run` and sample its tree's RSS; returns the samples and the exit status."""
    cmd = [sys.executable, "-m", "contextsort.cli", "run", str(corpus), "-o", str(run), "-q", *extra]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    manifest = run / "manifest.json"
    samples = []  # (seconds, rss bytes, stages recorded so far)
    m_mtime, done = 0.0, []
    while proc.poll() is None:
        try:
            mt = manifest.stat().st_mtime
            if mt != m_mtime:
                m_mtime, done = mt, recorded_stages(manifest)
        except OSError:
            pass
        samples.append((round(time.perf_counter() - t0, 2), tree_rss_bytes(proc.pid), len(done)))
        time.sleep(interval)
    err = proc.stderr.read()
    out = run.parent / f"rss_samples_{len(list(run.parent.glob('rss_samples_*.json')))}.json"
    out.write_text(json.dumps(samples))  # kept even if the run fails or is stopped: a resumed run adds a file
    if proc.returncode != 0:
        raise SystemExit(f"contextsort run failed ({proc.returncode}): {err[-2000:]}")
    return {"samples": samples, "wall_seconds": round(time.perf_counter() - t0, 1)}


def stage_peaks(sample_files: list[list], n_stages: int) -> dict[int, int]:
    """Peak RSS per stage index over one or more processes' samples (a run stopped and
    resumed leaves one list each): a sample counts for the stage it was taken in only if
    that process went on to finish the stage (index n_stages: after the last stage)."""
    peaks: dict[int, int] = {}
    for samples in sample_files:
        finished = max((s[2] for s in samples), default=0)
        for _, rss, j in samples:
            if j < finished or j == n_stages:
                peaks[j] = max(peaks.get(j, 0), rss)
    return peaks


def summarise(run: Path, sample_files: list[list], wall: float | None) -> dict:
    """Sizes of the embeddings and kNN arrays against the sampled peak, per stage."""
    man = json.loads((run / "manifest.json").read_text())
    names = list(man["stages"])
    stage_secs = {s: man["stages"][s].get("seconds") for s in names}
    emb_files = sorted(run.glob("embeddings*.npy"))
    emb = np.load(emb_files[0], mmap_mode="r")
    n, d = emb.shape
    emb_bytes = int(emb.nbytes)
    ids = sorted(run.glob("*knn*ids*.npy")) or sorted(run.glob("*ids*.npy"))
    k = int(np.load(ids[0], mmap_mode="r").shape[1]) if ids else 10
    knn_bytes = n * k * (8 + 4)
    per_stage = {(names[j] if j < len(names) else "after"): v for j, v in sorted(stage_peaks(sample_files, len(names)).items())}
    peak = max(per_stage.values())
    return {
        "n": int(n),
        "dim": int(d),
        "k": k,
        "embeddings_bytes": emb_bytes,
        "knn_bytes": knn_bytes,
        "peak_rss_bytes": int(peak),
        "ratio": round(peak / (emb_bytes + knn_bytes), 3),
        "target_ratio": 1.5,
        "meets_target": peak <= 1.5 * (emb_bytes + knn_bytes),
        "peak_rss_mb_per_stage": {s: round(v / 2**20, 1) for s, v in per_stage.items()},
        "stage_seconds": stage_secs,
        "knn_index": man["stages"].get("neighbors", {}).get("index"),
        "knn_params": man["stages"].get("neighbors", {}).get("params"),
        "knn_arrays_in_run": "knn_ids/sims (traversal graph) and dedup_ids/sims (dense) when --similarity is not dense; knn_bytes counts one pair",
        "wall_seconds": wall,
        "processes": len(sample_files),
        "interval_note": "RSS sampled every --interval seconds over the process tree; the true peak can be a little higher",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--work", default="/work/cache/mem1m", help="corpus and run directory (large: keep out of git)")
    ap.add_argument("--interval", type=float, default=0.5)
    ap.add_argument("--report-only", action="store_true", help="summarise a finished run from its saved samples")
    ap.add_argument("extra", nargs="*", help="extra `contextsort run` options, after --")
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    corpus, run = work / f"corpus_{a.n}.jsonl", work / "run"
    if a.report_only:
        wall = None
    else:
        if not corpus.exists():
            t = time.perf_counter()
            build_corpus(corpus, a.n)
            print(f"corpus: {a.n} documents in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        wall = run_sampled(corpus, run, a.interval, a.extra)["wall_seconds"]
    files = sorted(work.glob("rss_samples_*.json"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    print(json.dumps(summarise(run, [json.loads(f.read_text()) for f in files], wall), indent=1))


if __name__ == "__main__":
    main()
