"""Layer 8: the ``organsim`` command line. Each module registers its commands on ``app``."""

from organsim.cli import (
    agents,  # noqa: F401  (registers: train, evaluate)
    counterfactual,  # noqa: F401  (registers: strategies list|validate, whatif, trial, cf-benchmark)
    data,  # noqa: F401  (registers: info)
    ingest,  # noqa: F401  (registers: ingest physionet2019|meds|table|mimic-iv, export-meds)
    physiology,  # noqa: F401  (registers: generate, counterfactual)
    pipeline,  # noqa: F401  (registers: pipeline run|check|stages)
    scores,  # noqa: F401  (registers: scores)
    synth,  # noqa: F401  (registers: export, report-synthetic, synthesize)
    twin,  # noqa: F401  (registers: coordinate)
)
from organsim.cli.app import app


def main() -> None:
    """Entry point of the ``organsim`` console script."""
    app()


__all__ = ["app", "main"]
