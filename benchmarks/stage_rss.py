"""Peak resident set of one command, split into anonymous and file-backed pages (prints JSON).

Samples /proc/PID/status of the command's process (not its children) every `--interval`
seconds and keeps the sample with the largest VmRSS, with its RssAnon (heap, arrays) and
RssFile (touched pages of memory-mapped files and libraries). Used to see what a stage's peak
is made of, e.g. the write stage re-run alone on a copy of a finished run (docs/benchmarks.md,
"Write stage (helper writemem)"):

    PYTHONPATH=src python benchmarks/stage_rss.py -- python -m contextsort.cli run CORPUS -o RUN --no-report
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time

FIELDS = ("VmRSS", "RssAnon", "RssFile", "VmHWM")


def status_mib(pid: int) -> dict[str, float]:
    """The FIELDS of /proc/PID/status in MiB ({} once the process is gone)."""
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in FIELDS:
                    out[key] = round(int(value.split()[0]) / 1024, 1)
    except OSError:
        pass
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--interval", type=float, default=0.2)
    ap.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
    args = ap.parse_args()
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    t0 = time.time()
    proc = subprocess.Popen(cmd)
    peak: dict = {}
    hwm = 0.0
    while proc.poll() is None:
        s = status_mib(proc.pid)
        if s.get("VmRSS", 0) > peak.get("VmRSS", 0):
            peak = dict(s, seconds=round(time.time() - t0, 1))
        hwm = max(hwm, s.get("VmHWM", 0))
        time.sleep(args.interval)
    print(json.dumps({"rc": proc.returncode, "wall_seconds": round(time.time() - t0, 1), "peak_mib": peak,
                      "vmhwm_mib": hwm}, indent=1))


if __name__ == "__main__":
    main()
