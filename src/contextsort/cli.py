"""Command line: `contextsort run | demo | pack | report | probe`. Options are generated from the config
declarations (config.py), so the CLI, the Python API and validation never drift apart."""

from __future__ import annotations

import argparse
import errno
import sys
import time
import traceback

from .config import Config, api_name, field_default

GROUPS = {
    "input": "input",
    "embed": "pipeline", "knn": "pipeline", "similarity": "pipeline", "dedup": "pipeline", "order": "pipeline", None: "pipeline",
    "engine": "scale-out (see README: Scale-out)",
    "output": "output",
    "pack": "training contexts (packed when --context-length is given)",
}
SHORT = {"--context-length": "-L"}


def _converter(f):
    """argparse type for a field: errors name the option (argparse adds 'argument --x: invalid ...')."""
    check = f.metadata["check"]
    kind = getattr(check, "kind", None)
    if kind is int:
        return int
    if kind is float:
        return float
    if check.__class__.__name__ == "ListOf":
        return lambda s: [x.strip() for x in s.split(",") if x.strip()]
    if f.metadata["none"] and check.__class__.__name__ == "Text":
        return lambda s: s if s.strip() else None
    return str


def add_config_options(p: argparse.ArgumentParser, sections: set | None = None, pack_required: bool = False) -> None:
    """One argparse option per config field (of `sections`, default: all), grouped as in --help."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for section, f in Config.options():
        if sections is not None and section not in sections:
            continue
        title = GROUPS[section]
        if title not in groups:
            groups[title] = p.add_argument_group(title)
        g = groups[title]
        meta = f.metadata
        flags = [meta["flag"]] + ([SHORT[meta["flag"]]] if meta["flag"] in SHORT else [])
        dest = f"{section or 'top'}.{f.name}"
        default = field_default(section, f.name)
        if pack_required and (section, f.name) == ("pack", "context_length"):
            default = 8192
        help_text = meta["help"]
        if isinstance(default, bool):
            action = "store_false" if meta["negate"] else "store_true"
            g.add_argument(*flags, dest=dest, action=action, default=default, help=help_text)
            continue
        shown = ",".join(default) if isinstance(default, list) else default
        if shown is not None:
            help_text += f" (default: {shown})"
        g.add_argument(*flags, dest=dest, type=_converter(f), default=default, help=help_text, metavar=api_name(meta["flag"]).upper())


def config_from_args(a: argparse.Namespace, base: Config | None = None) -> Config:
    """The Config of parsed arguments (options not on this parser keep `base`'s values)."""
    c = Config.from_dict(base.to_dict()) if base is not None else Config()
    for dest, value in vars(a).items():
        if "." not in dest:
            continue
        section, name = dest.split(".", 1)
        c.set(None if section == "top" else section, name, value)
    return c.validate()


def summary(result) -> str:
    c = result.counts
    m = result.metrics
    lines = [
        f"run directory     {result.location or result.run_dir}"
        + (f"  (working copy {result.run_dir})" if result.location and result.location != str(result.run_dir) else ""),
        f"documents         read {c['records_read']}, kept {c['kept']}, duplicates {c['duplicates']}, rejected {c['rejected']}"
        f" ({'adds up' if c['adds_up'] else 'DOES NOT ADD UP'})",
    ]
    a = m.get("adjacent_similarity")
    if a:
        lines.append(f"adjacent_similarity  ordered {a['ordered']:.4f}   random {a['random']:.4f}")
    la = m.get("label_agreement")
    if la:
        lines.append(f"label_agreement      ordered {la['ordered']:.4f}   random {la['random']:.4f}   lift {la['lift']:.2f}x")
    rep = m.get("repeats")
    if rep:
        lines.append(f"repeats              {rep['rows']} rows for {rep['documents']} documents (not a permutation): each appears {rep['min']}-{rep['max']} times, mean {rep['mean']:.2f}")
    pw = m.get("path_weight")
    if pw:
        lines.append(f"path_weight          {pw['sum']:.1f} (mean {pw['mean']:.4f}/step, {pw['jumps']} jumps), bound {pw['bound']:.1f}, ratio {pw['ratio']:.3f}")
    pk = m.get("pack")
    if pk:
        lines.append(
            f"packed               {pk['contexts']} contexts of {pk['context_length']} tokens ({pk['mode']}), "
            f"{pk['context_tokens']} tokens, waste {pk.get('waste', 0):.2%}, documents split {pk.get('documents_split_share', 0):.2%}"
        )
        if "within_context_adjacent_similarity" in pk:
            ac = pk.get("across_contexts", {})
            lines.append(
                f"context similarity   within (adjacent docs) {pk['within_context_adjacent_similarity']:.4f}"
                + (f"; consecutive contexts {ac['written']:.4f} (random pairs {ac['random']:.4f})" if ac else "")
            )
    rep = result.manifest["stages"].get("report", {})
    if rep.get("skipped"):
        lines.append(f"report               not written: {rep['skipped']}")
    elif (result.run_dir / "report.html").exists():
        lines.append(f"report               {result.run_dir / 'report.html'}  (open it in a browser)")
    t = {k: v.get("seconds") for k, v in result.manifest["stages"].items()}
    lines.append("stage seconds     " + ", ".join(f"{k} {v}" for k, v in t.items()) + (f"  (reused: {', '.join(result.skipped)})" if result.skipped else ""))
    return "\n".join(lines)


def _verbosity(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("messages")
    g.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only (no progress bars or stage log)")
    g.add_argument("-v", "--verbose", action="store_true", help="debug messages")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="contextsort", description="Order a pretraining corpus the In-Context Pretraining way.")
    sub = parser.add_subparsers(dest="command", required=True)

    p_run = sub.add_parser("run", help="run the whole pipeline on a corpus")
    p_run.add_argument("inputs", nargs="+", help="JSONL (.gz/.zst), Parquet files or folders (of those, or of .txt files)")
    p_run.add_argument("-o", "--output", required=True, help="run directory (created; rerunning resumes); may be a URL: s3://bucket/runs/x")
    p_run.add_argument("--overwrite", action="store_true", help="clear a non-empty directory that is not a contextsort run")
    add_config_options(p_run)
    _verbosity(p_run)

    p_demo = sub.add_parser("demo", help="run the pipeline on the built-in BBC News sample and print a summary")
    p_demo.add_argument("-o", "--output", default="runs/demo", help="run directory (default: %(default)s)")
    p_demo.add_argument("--overwrite", action="store_true", help="clear a non-empty directory that is not a contextsort run")
    add_config_options(p_demo)
    _verbosity(p_demo)

    p_pack = sub.add_parser("pack", help="pack the order of a finished run into shuffled training contexts (RUN_DIR/packed)")
    p_pack.add_argument("run_dir", help="a run directory made by `contextsort run`")
    add_config_options(p_pack, sections={"pack"}, pack_required=True)
    _verbosity(p_pack)

    p_report = sub.add_parser("report", help="write the HTML report of a run (RUN_DIR/report.html; needs matplotlib)")
    p_report.add_argument("run_dir", help="a run directory made by `contextsort run`")
    p_report.add_argument("-o", "--output", default=None, help="HTML file to write (default: RUN_DIR/report.html)")
    _verbosity(p_report)

    p_probe = sub.add_parser("probe", help="train two tiny LMs (random vs. run order) and compare how much a related document helps (RUN_DIR/probe.json)")
    p_probe.add_argument("run_dir", help="a run directory made by `contextsort run`")
    p_probe.add_argument("--seeds", type=int, default=3, help="repetitions, each with its own split and initialisation (default: %(default)s)")
    p_probe.add_argument("--tokens", type=int, default=None, help="training tokens per model (default: one pass over the training documents)")
    p_probe.add_argument("--layers", type=int, default=2, help="transformer layers (default: %(default)s)")
    p_probe.add_argument("--width", type=int, default=128, help="model width (default: %(default)s)")
    p_probe.add_argument("--context-length", "-L", type=int, default=512, help="tokens per training context (default: %(default)s)")
    p_probe.add_argument("--score-tokens", type=int, default=128, help="tokens of each evaluated document scored, <= L/2 (default: %(default)s)")
    p_probe.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 (default: %(default)s)")
    p_probe.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: the CPUs this process may use)")
    _verbosity(p_probe)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command line; `argv` None: this process's own arguments (the process ends when main returns)."""
    a = build_parser().parse_args(argv)
    from .progress import setup_logging

    setup_logging(-1 if a.quiet else (1 if a.verbose else 0))
    own_process = argv is None
    if own_process:
        skip_collections()  # the modules imported so far live as long as the process
    status = _dispatch(a)
    if own_process:
        skip_collections()  # everything: spares the interpreter's exit its full collections
    return status


def skip_collections() -> None:
    """Leave the objects alive now out of all later garbage collections (gc.freeze).

    Used only when the process ends with `main`. A full collection traverses every live object
    (numba's, FAISS's, pyarrow's, matplotlib's...): a run does a few (0.3 s in all at 31k documents
    on a shared machine), and the interpreter's exit runs more (0.4-0.9 s), only to free memory
    that the process's end frees anyway (docs/benchmarks.md "Fixed costs (round 4)"). Output
    files are closed by then, and stdout/stderr are flushed at exit regardless.
    """
    import gc

    gc.freeze()


def _dispatch(a: argparse.Namespace) -> int:
    from .errors import ContextsortError

    try:
        return _command(a)
    except ContextsortError as e:
        print(f"contextsort: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno == errno.ENOSPC:
            print(f"contextsort: error: no space left on the device ({e.filename or 'while writing'}): free some space "
                  "and rerun the same command; finished stages are kept and the run resumes", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print("contextsort: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        print("contextsort: internal error (a bug, not your input): please report it with the traceback above", file=sys.stderr)
        return 1


def _command(a: argparse.Namespace) -> int:
    from .api import pack_run, run
    from .sample import bbc_news_path
    from .warmup import start_background as start_warmup

    if a.command == "report":
        from .report import write_report

        print(write_report(a.run_dir, a.output))
        return 0
    if a.command == "probe":
        return _probe(a)
    if a.command == "pack":
        cfg = config_from_args(a)
        result = pack_run(a.run_dir, cfg, quiet=a.quiet)
        print(summary(result))
        print(f"contexts in        {result.run_dir / 'packed'}/ (see pack.json)")
        return 0
    cfg = config_from_args(a)
    inputs = [bbc_news_path()] if a.command == "demo" else a.inputs
    start_warmup()  # on a fresh install only: compiles the late stages in a second process
    t = time.perf_counter()
    result = run(inputs, a.output, cfg, quiet=a.quiet, overwrite=a.overwrite)
    print(summary(result))
    if a.command == "demo":
        print(f"total             {time.perf_counter() - t:.2f}s; outputs in {result.run_dir}/ordered.jsonl, removed.jsonl, manifest.json")
    return 0


def _probe(a: argparse.Namespace) -> int:
    from pathlib import Path

    from .probe import run_probe, summary_line
    from .report import ReportUnavailable, write_report

    result = run_probe(a.run_dir, seeds=a.seeds, tokens=a.tokens, layers=a.layers, width=a.width,
                       context_length=a.context_length, score_tokens=a.score_tokens, device=a.device,
                       threads=a.threads, progress=not a.quiet)
    print(summary_line(result))
    print(f"details in         {Path(a.run_dir) / 'probe.json'}")
    if (Path(a.run_dir) / "report.html").exists():  # the report gains its probe section
        try:
            print(f"report             {write_report(a.run_dir)}")
        except ReportUnavailable:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
