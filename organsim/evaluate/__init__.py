"""Layer 7: evaluation. Forecast accuracy (per-system nMSE by horizon, metrics.json), trajectory plots,
and the synthetic-cohort report (fidelity, train-on-synthetic-test-on-real utility, privacy)."""

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
from organsim.evaluate.synthetic_report import (
    ReportConfig,
    SyntheticReport,
    build_synthetic_report,
    write_synthetic_report,
)
from organsim.evaluate.utility import normalised_utility

__all__ = [
    "DEFAULT_HORIZONS",
    "ReportConfig",
    "SyntheticReport",
    "aggregate",
    "build_synthetic_report",
    "evaluate_forecasters",
    "metrics_document",
    "normalised_utility",
    "plot_trajectories",
    "squared_error_sums",
    "summary_table",
    "write_metrics",
    "write_synthetic_report",
]
