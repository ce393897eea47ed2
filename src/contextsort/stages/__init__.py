"""The stages of a run, in pipeline order. Adding a stage = one small class + one entry here.

    ingest -> embed -> [partition] -> neighbors -> dedup -> order -> metrics -> write
           -> [tokenize -> pack] -> report         ([...]: only when configured)
"""

from __future__ import annotations

from .dedup import DedupStage
from .embed import EmbedStage
from .ingest import IngestStage
from .metrics import MetricsStage
from .neighbors import NeighborsStage
from .order import OrderStage
from .pack import PackStage, TokenizeStage
from .partition import PartitionStage
from .report import ReportStage
from .write import WriteStage


def pipeline_stages() -> list:
    """A fresh list of the pipeline's stage objects, in order."""
    return [IngestStage(), EmbedStage(), PartitionStage(), NeighborsStage(), DedupStage(), OrderStage(),
            MetricsStage(), WriteStage(), TokenizeStage(), PackStage(), ReportStage()]


__all__ = ["pipeline_stages"]
