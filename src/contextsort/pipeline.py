"""The pipeline: declared stages and the runner that only orchestrates them.

A stage declares its name, the config sections it reads, the artifacts it consumes and
the artifacts it produces (artifact name -> files in the run directory), and `run()`.
Its fingerprint is a hash of exactly those declarations: the values of the sections it
reads and the fingerprints of the artifacts it consumes. So a stage reruns when, and only
when, something it consumes changes. A stage may give an artifact a content
fingerprint (ingest does: touching an unchanged input re-reads it, but the store keeps
its fingerprint and the embeddings are reused; an edit that only changes bad lines
changes the reject list, so `removed.jsonl` is rewritten).

The runner locks the run directory, works out what is stale, calls the stages, removes
the outputs of stages that no longer apply, and records the manifest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from .atomic import remove_stale_tmp
from .config import Config, fingerprint
from .errors import RunError
from .faults import crash_point
from .progress import log
from .rundir import RunDirectory


class Stage:
    """One step of the pipeline; subclasses set the declarations and implement run()."""

    name: ClassVar[str] = ""
    version: ClassVar[int] = 1  # bump when the stage's code changes what it writes
    reads: ClassVar[tuple[str, ...]] = ()  # config sections (and "seed")
    consumes: ClassVar[tuple[str, ...]] = ()  # artifact names produced by earlier stages

    def applies(self, cfg: Config) -> bool:
        return True

    def produces(self, cfg: Config) -> dict[str, list[str]]:
        """Artifact name -> files (relative to the run directory) this stage writes."""
        raise NotImplementedError

    def key(self, ctx: "RunContext") -> object:
        """Extra fingerprint material known before the stage runs (ingest: the inputs' content)."""
        return None

    def prepare(self, ctx: "RunContext") -> None:
        """Called before any stage runs, only when this stage is going to run (load a model early)."""

    def run(self, ctx: "RunContext") -> dict:
        """Write the produced files; return what the manifest records (JSON-able).

        Two keys are for the runner: "artifact_fingerprints" ({artifact: content hash}) and
        "extra_files" (files whose names are known only after running, e.g. shards).
        """
        raise NotImplementedError


@dataclass
class RunContext:
    """What a stage may use: the run directory, the config, the engine, the inputs, earlier stages' records."""

    run_dir: RunDirectory
    cfg: Config
    engine: object
    inputs: list[str]
    manifest: dict
    cache: dict = field(default_factory=dict)

    def path(self, rel: str) -> Path:
        return self.run_dir.path / rel

    def record(self, stage: str) -> dict:
        """The manifest record of a finished stage (counts, parameters it chose)."""
        return self.manifest["stages"].get(stage, {})

    def cached(self, key: str, make):
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]


@dataclass
class RunResult:
    run_dir: Path
    manifest: dict
    order: object  # numpy int64: store positions of the kept documents, in output order
    skipped: list[str] = field(default_factory=list)  # stages reused from an earlier run
    location: str = ""  # the run directory as named by the user (a URL when it is remote; run_dir is then its working copy)

    @property
    def metrics(self) -> dict:
        return self.manifest.get("metrics", {})

    @property
    def counts(self) -> dict:
        return self.manifest.get("counts", {})


class Runner:
    """Runs `stages` over `inputs` into `run_dir` with `config` (already validated)."""

    def __init__(self, stages: list[Stage], inputs: list[str], run_dir: RunDirectory, cfg: Config, engine,
                 only: set[str] | None = None):
        """only: run just these stages; the others' artifacts are taken as recorded (`contextsort pack`)."""
        self.stages = [s for s in stages if s.applies(cfg)]
        self.only = only
        self.inputs = inputs
        self.dir = run_dir
        self.cfg = cfg
        self.engine = engine
        self.manifest = run_dir.read_manifest()
        self.manifest.setdefault("stages", {})
        self.ctx = RunContext(run_dir, cfg, engine, inputs, self.manifest)
        self.skipped: list[str] = []

    def _fingerprint(self, stage: Stage, artifact_fps: dict[str, str], key: object) -> str:
        consumed = {a: artifact_fps.get(a, "absent") for a in stage.consumes}
        return fingerprint(stage.name, stage.version, self.cfg.section_values(stage.reads), consumed, key)

    def _fresh(self, stage: Stage, fp: str) -> bool:
        rec = self.manifest["stages"].get(stage.name)
        if not rec or rec.get("fingerprint") != fp:
            return False
        files = [f for fs in stage.produces(self.cfg).values() for f in fs] + rec.get("files", [])
        return all(self.ctx.path(f).exists() for f in files)

    def run(self) -> RunResult:
        t_all = time.perf_counter()
        remove_stale_tmp(self.dir.path)
        keys = {s.name: s.key(self.ctx) for s in self._runnable()}
        self._prepare(keys)
        self._remove_inapplicable()
        artifact_fps: dict[str, str] = {}
        for stage in self.stages:
            if self.only is not None and stage.name not in self.only:
                artifact_fps.update(self.manifest["stages"].get(stage.name, {}).get("artifacts", {}))
                continue
            fp = self._fingerprint(stage, artifact_fps, keys[stage.name])
            if self._fresh(stage, fp):
                self.skipped.append(stage.name)
                log.info(f"[{stage.name}] up to date, skipped")
            else:
                self._run_stage(stage, fp)
            artifact_fps.update(self.manifest["stages"][stage.name]["artifacts"])
        self._finish(t_all)
        return RunResult(self.dir.path, self.manifest, np.load(self.ctx.path("order.npy")), list(self.skipped),
                         self.dir.location)

    def _runnable(self) -> list[Stage]:
        return [s for s in self.stages if self.only is None or s.name in self.only]

    def _prepare(self, keys: dict) -> None:
        """Let the stages that will run fail early (a model that cannot load), assuming
        each artifact keeps the fingerprint it had in the previous run (a rerun of ingest
        usually leaves the store's content fingerprint as it was)."""
        fps: dict[str, str] = {}
        for stage in self.stages:
            rec = self.manifest["stages"].get(stage.name, {})
            if stage.name not in keys:  # not run now: its artifacts stay as recorded
                fps.update(rec.get("artifacts", {}))
                continue
            fp = self._fingerprint(stage, fps, keys[stage.name])
            if not self._fresh(stage, fp):
                stage.prepare(self.ctx)
            produced = stage.produces(self.cfg)
            fps.update({a: rec.get("artifacts", {}).get(a, fp) for a in produced})

    def _run_stage(self, stage: Stage, fp: str) -> None:
        t, cpu = time.perf_counter(), time.process_time()
        info = stage.run(self.ctx) or {}
        secs = time.perf_counter() - t
        cpu = time.process_time() - cpu  # every thread of this process: cpu / secs is how many cores the stage kept busy
        produced = stage.produces(self.cfg)
        content_fps = info.pop("artifact_fingerprints", {})
        artifacts = {a: content_fps.get(a, fp) for a in produced}
        files = [f for fs in produced.values() for f in fs] + info.pop("extra_files", [])
        old = self.manifest["stages"].get(stage.name, {}).get("files", [])
        for f in old:
            if f not in files:
                self.dir.remove(f)
        crash_point(f"{stage.name}:before-commit")
        self.dir.publish(files, {**self.manifest, "stages": {k: v for k, v in self.manifest["stages"].items() if k != stage.name}})
        nodes = self.engine.take_node_ids()
        # "files" last: every file of the stage (a stage's own "files" key names only some, e.g. write's ordered.*)
        self.manifest["stages"][stage.name] = {"fingerprint": fp, "seconds": round(secs, 3),
                                               "cpu_seconds": round(cpu, 3), "artifacts": artifacts, "engine": self.engine.name, "node_ids": nodes, **info, "files": files}
        self._collect()
        self.dir.write_manifest(self.manifest)
        log.info(f"[{stage.name}] done in {secs:.2f}s")

    def _remove_inapplicable(self) -> None:
        """Outputs of stages that no longer apply (packing turned off, a format dropped) go, with their record."""
        active = {s.name for s in self.stages}
        for name in list(self.manifest["stages"]):
            if name not in active:
                for f in self.manifest["stages"][name].get("files", []):
                    self.dir.remove(f)
                del self.manifest["stages"][name]
                self.dir.write_manifest(self.manifest)
                log.info(f"[{name}] no longer applies: its outputs were removed")

    def _collect(self) -> None:
        """Top-level counts and metrics from the stages' records (complete before the report reads them)."""
        st = self.manifest["stages"]
        if "write" in st:
            self.manifest["counts"] = st["write"]["counts"]
        metrics = dict(st.get("metrics", {}).get("values", {}))
        if "pack" in st:
            metrics["pack"] = st["pack"]["summary"]
        self.manifest["metrics"] = metrics
        if "ingest" in st:
            self.manifest["input_fingerprint"] = st["ingest"].get("input_fingerprint")

    def _finish(self, t_all: float) -> None:
        self._collect()
        counts = self.manifest["counts"]
        self.manifest["seconds_total"] = round(time.perf_counter() - t_all, 3)
        self.manifest["skipped"] = list(self.skipped)  # stages this run reused
        self.dir.write_manifest(self.manifest)
        if not counts["adds_up"]:
            raise RunError(f"counts do not add up: kept {counts['kept']} + duplicates {counts['duplicates']} + "
                           f"rejected {counts['rejected']} != read {counts['records_read']}")
