"""Layer 8: the ``organsim`` command line. Each module registers its commands on ``app``."""

from organsim.cli import (
    data,  # noqa: F401  (registers: info)
    ingest,  # noqa: F401  (registers: ingest physionet2019|meds|table, export-meds)
    scores,  # noqa: F401  (registers: scores)
)
from organsim.cli.app import app


def main() -> None:
    """Entry point of the ``organsim`` console script."""
    app()


__all__ = ["app", "main"]
