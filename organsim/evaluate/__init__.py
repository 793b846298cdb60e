"""Layer 7: evaluation. Forecast accuracy (per-system nMSE by horizon, metrics.json), the forecast
report of a trained model (agents, coordinated twin, baselines; the twin's constraint violations,
reference choices and event chains), trajectory plots, and the synthetic-cohort report (fidelity,
train-on-synthetic-test-on-real utility, privacy)."""

from organsim.evaluate.accuracy import (
    DEFAULT_HORIZONS,
    aggregate,
    evaluate_forecasters,
    metrics_document,
    squared_error_sums,
    summary_table,
    write_metrics,
)
from organsim.evaluate.forecast_report import (
    BASELINES,
    TWIN_NAME,
    evaluate_agents,
    fit_baselines,
)
from organsim.evaluate.plots import plot_trajectories
from organsim.evaluate.synthetic_report import (
    ReportConfig,
    SyntheticReport,
    build_synthetic_report,
    write_synthetic_report,
)
from organsim.evaluate.twin_report import (
    TwinForecaster,
    constraint_violations,
    event_chain_comparison,
    realism,
    reference_frequencies,
    simulate_held_out,
    write_twin_report,
)
from organsim.evaluate.utility import normalised_utility

__all__ = [
    "BASELINES",
    "DEFAULT_HORIZONS",
    "TWIN_NAME",
    "TwinForecaster",
    "ReportConfig",
    "SyntheticReport",
    "aggregate",
    "build_synthetic_report",
    "constraint_violations",
    "evaluate_agents",
    "event_chain_comparison",
    "fit_baselines",
    "evaluate_forecasters",
    "metrics_document",
    "normalised_utility",
    "plot_trajectories",
    "realism",
    "reference_frequencies",
    "simulate_held_out",
    "squared_error_sums",
    "summary_table",
    "write_metrics",
    "write_synthetic_report",
    "write_twin_report",
]
