"""report: the run's HTML page (report.py), last, from the artifacts alone. Needs matplotlib
(the `report` extra); without it the run still succeeds and says how to get the report."""

from __future__ import annotations

from ..pipeline import RunContext, Stage
from ..progress import log


class ReportStage(Stage):
    name = "report"
    reads = ("seed",)
    consumes = ("store", "rejects", "embeddings", "knn", "dup_of", "order", "metrics", "ordered", "removed", "packed")

    def applies(self, cfg) -> bool:
        return cfg.output.report

    def produces(self, cfg):
        return {"report": ["report.html"]}

    def run(self, ctx: RunContext) -> dict:
        from ..report import ReportUnavailable, write_report

        try:
            path = write_report(ctx.run_dir.path, seed=ctx.cfg.seed)
        except ReportUnavailable as e:
            log.warning(f"contextsort: warning: report skipped: {e}")
            return {"skipped": str(e)}
        log.info(f"[report] {path}")
        return {"size_bytes": path.stat().st_size}
