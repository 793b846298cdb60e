"""Layer 7: evaluation. Forecast accuracy (per-system nMSE by horizon, metrics.json) and trajectory plots."""

from organsim.evaluate.accuracy import (
    DEFAULT_HORIZONS,
    aggregate,
    evaluate_forecasters,
    metrics_document,
    squared_error_sums,
    summary_table,
    write_metrics,
)
from organsim.evaluate.plots import plot_trajectories

__all__ = [
    "DEFAULT_HORIZONS",
    "aggregate",
    "evaluate_forecasters",
    "metrics_document",
    "plot_trajectories",
    "squared_error_sums",
    "summary_table",
    "write_metrics",
]
