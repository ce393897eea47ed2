"""The stages of a run, in pipeline order. Adding a stage = one small class + one entry here.

    ingest -> tokenize -> embed -> [partition] -> neighbors -> dedup -> order -> metrics -> write
           -> [tokenize_pack] -> [pack] -> report         ([...]: only when configured)
"""

from __future__ import annotations

from .dedup import DedupStage
from .embed import EmbedStage
from .ingest import IngestStage
from .metrics import MetricsStage
from .neighbors import NeighborsStage
from .order import OrderStage
from .pack import PackStage
from .partition import PartitionStage
from .report import ReportStage
from .tokenize import PackTokenizeStage, TokenizeStage
from .write import WriteStage


def pipeline_stages() -> list:
    """A fresh list of the pipeline's stage objects, in order."""
    return [IngestStage(), TokenizeStage(), EmbedStage(), PartitionStage(), NeighborsStage(), DedupStage(), OrderStage(),
            MetricsStage(), WriteStage(), PackTokenizeStage(), PackStage(), ReportStage()]


__all__ = ["pipeline_stages"]
