"""The Python API: `contextsort.run(inputs, out, **options)` and `contextsort.pack_run(run_dir, **options)`."""

from __future__ import annotations

import os
import platform
from typing import Any, Iterable

from .config import Config
from .engines import get_engine
from .errors import RunDirError
from .pipeline import RunResult, Runner
from .progress import log
from .remote_run import RemoteRunDirectory, open_run_directory, parse
from .rundir import read_manifest_file
from .stages import pipeline_stages


def versions() -> dict:
    import faiss
    import numba
    import numpy as np
    import pyarrow

    from . import __version__

    return {"contextsort": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "faiss": faiss.__version__, "numba": numba.__version__, "pyarrow": pyarrow.__version__}


def run(inputs: str | os.PathLike | Iterable[str | os.PathLike], run_dir: str | os.PathLike, config: Config | None = None,
        *, quiet: bool = True, overwrite: bool = False, **options: Any) -> RunResult:
    """Run the whole pipeline (resuming where possible) and return the result.

    Options are given by their command-line names (``text_field="content"``, ``k=20``,
    ``order="paper"``) on top of `config`; every value is validated before any work.
    `run_dir` may be an fsspec URL (``s3://bucket/runs/x``): the stages run in a local
    working copy (``cache_dir=``) and are uploaded as they finish (remote_run.py).
    """
    from . import __version__
    from .progress import setup_logging

    if quiet:
        setup_logging(-1)
    cfg = (config or Config()).with_options(**options).validate()
    inputs = [str(inputs)] if isinstance(inputs, (str, os.PathLike)) else [str(p) for p in inputs]
    engine = get_engine(cfg.engine)
    try:
        with open_run_directory(run_dir, inputs, overwrite, cfg.output.cache_dir) as rd:
            runner = Runner(pipeline_stages(), inputs, rd, cfg, engine)
            runner.manifest.update({"contextsort": __version__, "inputs": inputs, "config": cfg.to_dict(),
                                    "options": {k: v for k, v in cfg.differences().items()}, "versions": versions()})
            return runner.run()
    finally:
        engine.close()


def pack_run(run_dir: str | os.PathLike, config: Config | None = None, *, quiet: bool = True, **options: Any) -> RunResult:
    """Pack the order of a finished run into training contexts (``RUN_DIR/packed``; RUN_DIR may be a URL).

    The run's own config supplies everything but the pack options given here (as
    `config.pack` or as keywords such as ``context_length=8192, mode="boundary"``).
    """
    from .progress import setup_logging

    if quiet:
        setup_logging(-1)
    rd = open_run_directory(run_dir, cache_dir=config.output.cache_dir if isinstance(config, Config) else None)
    if isinstance(rd, RemoteRunDirectory):
        raw = rd.remote_manifest()
        manifest = parse(raw) if raw is not None else None
    else:
        manifest = read_manifest_file(rd.path / "manifest.json")
    if manifest is None or "stages" not in manifest:
        raise RunDirError(f"{run_dir}: not a contextsort run (no manifest.json)")
    for need in ("ingest", "order", "write"):
        if need not in manifest.get("stages", {}):
            raise RunDirError(f"{run_dir}: no finished '{need}' stage: run `contextsort run` first")
    cfg = Config.from_dict(manifest.get("config", {}))
    if config is not None:
        cfg.pack = config.pack if isinstance(config, Config) else config
    pack_keys = {"context_length", "tokenizer", "mode", "formats", "bos", "drop_last", "shuffle", "seed", "shard_size",
                 "pad_id", "pad_weight", "split_cost", "min_split"}
    for k, v in options.items():
        if k not in pack_keys:
            raise TypeError(f"unknown pack option {k!r}")
        setattr(cfg.pack, k, v)
    if not cfg.pack.context_length:
        from .errors import ConfigError

        raise ConfigError("--context-length is required to pack")
    cfg.validate()
    engine = get_engine(cfg.engine)
    try:
        with rd:
            runner = Runner(pipeline_stages(), manifest.get("inputs", []), rd, cfg, engine, only={"tokenize", "tokenize_pack", "pack", "report"})
            runner.manifest["config"] = cfg.to_dict()
            return runner.run()
    finally:
        engine.close()


__all__ = ["run", "pack_run", "versions", "log"]
