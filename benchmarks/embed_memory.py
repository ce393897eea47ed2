"""Peak memory of the embed stage alone, replayed on a finished run (prints JSON).

Run on a copy of a run directory whose manifest has had the `embed` record (and those
after it) removed: `contextsort run` then skips ingest and tokenize and runs embed. A
sampler reads /proc/PID/status of the run every `--interval` seconds (VmRSS split into
RssAnon = the process's own memory and RssFile = pages of mapped files, plus VmHWM) and
stops the run as soon as the manifest records the embed stage, before neighbors starts.

    # copy of the 1M run of docs/benchmarks.md "Memory at 1M" (hard links; the stage writes new files by rename)
    cp -al /work/cache/mem1m_r4 /work/cache/embw
    cp --remove-destination /work/cache/mem1m_r4/run/{manifest.json,.lock} /work/cache/embw/run/
    # drop the embed record and those after it from embw/run/manifest.json, then:
    PYTHONPATH=src python benchmarks/embed_memory.py --src src --run /work/cache/embw/run \
        --input /work/cache/mem1m_r4/corpus_1000000.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

FIELDS = ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM")


def status_kib(pid: int) -> dict[str, int]:
    """The memory fields of /proc/PID/status in KiB ({} once the process is gone)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in FIELDS:
                    out[key] = int(rest.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        return {}
    return out


def recorded_stages(manifest: Path) -> set[str]:
    try:
        return set(json.loads(manifest.read_text()).get("stages", {}))
    except (OSError, ValueError):
        return set()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", required=True, help="the source tree to run (put first on PYTHONPATH)")
    ap.add_argument("--run", required=True, help="run directory (embed record removed from its manifest)")
    ap.add_argument("--input", required=True, help="the corpus the run was made from")
    ap.add_argument("--interval", type=float, default=0.05)
    a = ap.parse_args()
    manifest = Path(a.run) / "manifest.json"
    env = dict(os.environ, PYTHONPATH=str(Path(a.src).resolve()))
    cmd = [sys.executable, "-c", "from contextsort.cli import main; main()", "run", a.input, "-o", a.run, "--no-report"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = {k: 0 for k in FIELDS}
    at_peak: dict[str, int] = {}
    samples = 0
    finished = False
    while proc.poll() is None:
        s = status_kib(proc.pid)
        if "embed" in recorded_stages(manifest):
            finished = True
            break  # embed recorded: what follows is the neighbors stage
        if s:
            samples += 1
            if s.get("VmRSS", 0) > peak["VmRSS"]:
                at_peak = s
            for k in FIELDS:
                peak[k] = max(peak[k], s.get(k, 0))
        time.sleep(a.interval)
    seconds = time.perf_counter() - t0
    if proc.poll() is None:
        proc.terminate()
    err = proc.communicate(timeout=60)[1]
    mib = lambda kib: round(kib / 1024, 1)
    print(json.dumps({
        "src": a.src, "embed_finished": finished, "seconds_to_embed_record": round(seconds, 1), "samples": samples,
        "peak_mib": {k: mib(v) for k, v in peak.items()},  # each field's own maximum
        "at_peak_rss_mib": {k: mib(v) for k, v in at_peak.items()},  # all fields at the sample of highest VmRSS
        "stderr_tail": err[-600:] if not finished else "",
    }, indent=1))


if __name__ == "__main__":
    main()
