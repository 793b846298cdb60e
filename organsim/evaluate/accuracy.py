"""Forecast accuracy: per-system nMSE at 1, 6 and 24 hours, and the metrics.json writer.

Metric (issue 4). For a horizon ``h`` the harness cuts forecast problems from the test cohort,
asks every forecaster for ``predict(batch, horizon=h)`` and scores step ``h`` only: step 1 is
conditioned on the true history, steps 6 and 24 are free-running rollouts.

- nMSE: the squared error of z-scored values (training-split mean and std from the
  :class:`~organsim.data.normalize.Normaliser`), over *observed* targets only, averaged per
  variable; a system's nMSE is the mean over its variables that have at least one observed
  target; ``mean_nmse`` is the mean over the systems that have one.
- ``mse_minmax``: the same on values scaled to [0, 1] by the training split's 1st and 99th
  percentiles (the scale on which the published system reports per-system MSE).

Start hours: for each horizon ``h`` separately, :func:`~organsim.data.windows.choose_starts` picks
up to ``per_stay`` start hours t per test stay by a seeded hash, with at least ``min_context`` of
the stay's hours in the context and ``t + h <= `` the stay's last hour. Every forecaster is scored
on the same problems. Systems or variables without an observed target at a horizon get ``null``.

``by_sofa_stratum`` repeats the per-system and mean figures for the problems whose start hour
falls in each SOFA stratum (worst SOFA over the preceding 24 hours: 0-5, 6-10, 11+).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from rich.table import Table

from organsim.catalog import SYSTEMS, Catalog
from organsim.data.cohort import Cohort
from organsim.data.normalize import Normaliser
from organsim.data.windows import Forecaster, HourlyArrays
from organsim.scores import sofa
from organsim.scores.tables import SOFA_STRATA
from organsim.utils.io import atomic_write_text
from organsim.utils.progress import progress_bar

DEFAULT_HORIZONS = (1, 6, 24)
UNKNOWN_STRATUM = "unknown"
"""SOFA stratum label of a start hour whose SOFA cannot be computed."""


def squared_error_sums(
    prediction: np.ndarray, truth: np.ndarray, normaliser: Normaliser, variables: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-variable sums of squared z-score and min-max errors over observed targets.

    Parameters
    ----------
    prediction, truth
        ``(N, V)`` raw-unit values; NaN in ``truth`` = not observed (not scored).
    normaliser
        Training-split statistics.
    variables
        The ``V`` variable codes of the last axis.

    Returns
    -------
    sum_sq_z, sum_sq_minmax, n_targets
        ``(V,)`` float64, float64, int64.

    Raises
    ------
    ValueError
        When ``prediction`` is not finite where ``truth`` is observed.
    """
    observed = ~np.isnan(truth)
    bad = observed & ~np.isfinite(prediction)
    if bad.any():
        column = int(np.nonzero(bad.any(axis=0))[0][0])
        raise ValueError(f"forecast of {variables[column]!r} is not finite where the truth is observed")
    error_z = normaliser.zscore(prediction, variables).astype(np.float64) - normaliser.zscore(truth, variables)
    error_mm = normaliser.minmax(prediction, variables).astype(np.float64) - normaliser.minmax(truth, variables)
    sum_z = np.where(observed, error_z**2, 0.0).sum(axis=0)
    sum_mm = np.where(observed, error_mm**2, 0.0).sum(axis=0)
    return sum_z, sum_mm, observed.sum(axis=0).astype(np.int64)


def aggregate(
    sum_sq_z: np.ndarray, sum_sq_minmax: np.ndarray, n_targets: np.ndarray, variables: Sequence[str], catalog: Catalog
) -> dict[str, Any]:
    """Turn per-variable error sums into per-variable, per-system and mean figures.

    Returns
    -------
    dict
        ``{"variables": {code: {"nmse", "mse_minmax", "n_targets"}}, "systems": {system: {...}},
        "mean_nmse", "mean_mse_minmax", "n_targets"}``; figures without a target are ``None``.
    """
    per_variable: dict[str, dict[str, Any]] = {}
    for i, code in enumerate(variables):
        n = int(n_targets[i])
        per_variable[code] = {
            "nmse": float(sum_sq_z[i] / n) if n else None,
            "mse_minmax": float(sum_sq_minmax[i] / n) if n else None,
            "n_targets": n,
        }
    system_of = catalog.system_of
    systems: dict[str, dict[str, Any]] = {}
    for system in SYSTEMS:
        scored = [per_variable[c] for c in variables if system_of[c] == system and per_variable[c]["n_targets"]]
        systems[system] = {
            "nmse": float(np.mean([v["nmse"] for v in scored])) if scored else None,
            "mse_minmax": float(np.mean([v["mse_minmax"] for v in scored])) if scored else None,
            "n_targets": int(sum(v["n_targets"] for v in scored)),
            "n_variables_scored": len(scored),
        }
    with_targets = [s for s in systems.values() if s["n_targets"]]
    return {
        "variables": per_variable,
        "systems": systems,
        "mean_nmse": float(np.mean([s["nmse"] for s in with_targets])) if with_targets else None,
        "mean_mse_minmax": float(np.mean([s["mse_minmax"] for s in with_targets])) if with_targets else None,
        "n_targets": int(n_targets.sum()),
    }


def _nest(by_horizon: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Re-key ``{h: aggregate(...)}`` as ``systems.<system>.nmse.<h>``, ``mean_nmse.<h>`` etc."""
    first = next(iter(by_horizon.values()))
    out: dict[str, Any] = {
        "mean_nmse": {str(h): a["mean_nmse"] for h, a in by_horizon.items()},
        "mean_mse_minmax": {str(h): a["mean_mse_minmax"] for h, a in by_horizon.items()},
        "n_targets": {str(h): a["n_targets"] for h, a in by_horizon.items()},
    }
    for group in ("systems", "variables"):
        out[group] = {
            key: {field: {str(h): a[group][key][field] for h, a in by_horizon.items()} for field in first[group][key]}
            for key in first[group]
        }
    return out


class _ErrorSums:
    """Running per-variable sums of squared errors for one (forecaster, horizon, group)."""

    def __init__(self, n_variables: int) -> None:
        self.sum_sq_z = np.zeros(n_variables)
        self.sum_sq_minmax = np.zeros(n_variables)
        self.n_targets = np.zeros(n_variables, dtype=np.int64)
        self.n_problems = 0

    def add(self, parts: tuple[np.ndarray, np.ndarray, np.ndarray], n_problems: int) -> None:
        self.sum_sq_z += parts[0]
        self.sum_sq_minmax += parts[1]
        self.n_targets += parts[2]
        self.n_problems += n_problems


def _strata_at(starts: pl.DataFrame, strata: pl.DataFrame) -> np.ndarray:
    """The SOFA stratum label (``"0-5"``, ``"6-10"``, ``"11+"``, or ``"unknown"``) at each start hour."""
    labelled = starts.join(strata, on=["stay_id", "hour"], how="left", maintain_order="left")
    return labelled["sofa_stratum"].fill_null(UNKNOWN_STRATUM).to_numpy()


def _sofa_strata(test: Cohort) -> pl.DataFrame:
    """``(stay_id, hour, sofa_stratum)`` of the test cohort: the stratum of the 24-hour worst SOFA."""
    treatments = test.treatments if test.meta.get("treatments_recorded", False) else None
    scored = sofa(test.hourly, treatments, catalog=test.catalog)
    return scored.select(pl.col("stay_id").cast(pl.Int64), pl.col("hour").cast(pl.Int32), "sofa_stratum")


def evaluate_forecasters(
    forecasters: Mapping[str, Forecaster],
    test: Cohort,
    normaliser: Normaliser,
    *,
    horizons: Sequence[int] = DEFAULT_HORIZONS,
    context_hours: int = 24,
    per_stay: int | None = 16,
    min_context: int = 3,
    seed: int = 0,
    by_sofa_stratum: bool = True,
    chunk_size: int = 8192,
    progress: bool = False,
) -> dict[str, Any]:
    """Score every forecaster on the same problems cut from ``test``.

    Parameters
    ----------
    forecasters
        Name -> forecaster; the names become the keys of the result.
    test
        The held-out cohort (e.g. ``cohort.subset(split="test")``).
    normaliser
        Fitted on the training split only.
    horizons
        Hours ahead to score (step h of a h-step free-running forecast).
    context_hours
        Context length C given to the forecasters.
    per_stay
        Most start hours per stay and horizon (``None``: every eligible hour).
    min_context
        Fewest of the stay's own hours in a context (the default, 3, leaves out forecasts made
        from a stay's first hours, where no history exists and every forecaster falls back on a
        population mean).
    seed
        Seed of the start-hour choice.
    by_sofa_stratum
        Also report the figures per SOFA stratum of the start hour: the stratum of the worst
        SOFA over the 24 hours up to t (:func:`organsim.scores.sofa`, true values; treatments
        used when the cohort records them), ``"unknown"`` where SOFA cannot be computed.
    chunk_size
        Problems per ``predict`` call (bounds memory).
    progress
        Show a rich progress bar.

    Returns
    -------
    dict
        ``{"settings": {...}, "forecasters": {name: {"mean_nmse": {h}, "mean_mse_minmax": {h},
        "n_targets": {h}, "systems": {system: {"nmse": {h}, "mse_minmax": {h}, "n_targets": {h},
        "n_variables_scored": {h}}}, "variables": {code: {...}}, "by_sofa_stratum": {label:
        {"n_problems": {h}, "mean_nmse": {h}, "mean_mse_minmax": {h}, "n_targets": {h},
        "systems": {...}}}}}}``, horizons as string keys.
    """
    if not forecasters:
        raise ValueError("no forecaster to evaluate")
    if any(h < 1 for h in horizons):
        raise ValueError(f"horizons must be >= 1, got {list(horizons)}")
    arrays = HourlyArrays.from_cohort(test)
    variables = arrays.variables
    strata = _sofa_strata(test) if by_sofa_stratum else None
    plans = [(h, arrays.starts(horizon=h, per_stay=per_stay, min_context=min_context, seed=seed)) for h in horizons]
    totals: dict[tuple[str, int], _ErrorSums] = {}
    by_stratum: dict[tuple[str, int, str], _ErrorSums] = {}
    total_chunks = sum(-(-starts.height // chunk_size) for _, starts in plans) * len(forecasters)
    with progress_bar(disable=not progress, transient=True) as bar:
        task = bar.add_task("evaluating forecasters", total=total_chunks)
        for h, starts in plans:
            for name in forecasters:
                totals[name, h] = _ErrorSums(len(variables))
            for lo in range(0, starts.height, chunk_size):
                chunk = starts.slice(lo, chunk_size)
                batch = arrays.batch(chunk, context_hours=context_hours, horizon=h)
                truth = arrays.targets(chunk, horizon=h)[:, h - 1]  # (b, V)
                labels = _strata_at(chunk, strata) if strata is not None else None
                for name, forecaster in forecasters.items():
                    bar.update(task, description=f"{name}: {h} h")
                    prediction = np.asarray(forecaster.predict(batch, h))
                    if prediction.shape != (batch.size, h, len(variables)):
                        raise ValueError(
                            f"forecaster {name!r} returned shape {prediction.shape}; expected {(batch.size, h, len(variables))}"
                        )
                    try:
                        totals[name, h].add(squared_error_sums(prediction[:, h - 1], truth, normaliser, variables), batch.size)
                        for label in np.unique(labels) if labels is not None else ():
                            rows = labels == label
                            sums = by_stratum.setdefault((name, h, str(label)), _ErrorSums(len(variables)))
                            sums.add(squared_error_sums(prediction[rows, h - 1], truth[rows], normaliser, variables), int(rows.sum()))
                    except ValueError as exc:
                        raise ValueError(f"forecaster {name!r} at horizon {h}: {exc}") from exc
                    bar.advance(task)
    catalog = test.catalog
    scored: dict[str, dict[str, Any]] = {}
    for name in forecasters:
        figures = _nest({h: aggregate(*_sums(totals[name, h]), variables, catalog) for h, _ in plans})
        if strata is not None:
            figures["by_sofa_stratum"] = _strata_figures(by_stratum, name, [h for h, _ in plans], variables, catalog)
        scored[name] = figures
    return {
        "settings": {
            "horizons": [int(h) for h in horizons],
            "context_hours": context_hours,
            "per_stay": per_stay,
            "min_context": min_context,
            "seed": seed,
            "n_stays": int(len(arrays.stay_ids)),
            "n_problems": {str(h): starts.height for h, starts in plans},
            "cohort_source": test.meta.get("source"),
        },
        "forecasters": scored,
    }


def _sums(sums: _ErrorSums) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return sums.sum_sq_z, sums.sum_sq_minmax, sums.n_targets


def _strata_figures(
    by_stratum: dict[tuple[str, int, str], _ErrorSums], name: str, horizons: list[int], variables: Sequence[str], catalog: Catalog
) -> dict[str, Any]:
    """``{label: {"n_problems": {h}, "mean_nmse": {h}, ..., "systems": {...}}}`` for one forecaster."""
    labels = sorted({label for (n, _, label) in by_stratum if n == name}, key=_stratum_order)
    out: dict[str, Any] = {}
    for label in labels:
        present = {h: by_stratum[name, h, label] for h in horizons if (name, h, label) in by_stratum}
        nested = _nest({h: aggregate(*_sums(sums), variables, catalog) for h, sums in present.items()})
        nested.pop("variables")
        out[label] = {"n_problems": {str(h): sums.n_problems for h, sums in present.items()}, **nested}
    return out


def _stratum_order(label: str) -> tuple[int, str]:
    order = [s[0] for s in SOFA_STRATA]
    return (order.index(label), label) if label in order else (len(order), label)


def metrics_document(primary: str, results: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics.json content: ``primary``'s figures at top level, the others under ``baselines.<name>``."""
    scored = results["forecasters"]
    if primary not in scored:
        raise KeyError(f"primary forecaster {primary!r} was not evaluated; evaluated: {sorted(scored)}")
    return {
        "primary": primary,
        **scored[primary],
        "baselines": {name: figures for name, figures in scored.items() if name != primary},
        "settings": results["settings"],
    }


def write_metrics(path: str | Path, primary: str, results: Mapping[str, Any]) -> Path:
    """Write :func:`metrics_document` as JSON to ``path`` atomically; returns the path."""
    text = json.dumps(metrics_document(primary, results), indent=2, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def summary_table(results: Mapping[str, Any], *, title: str = "mean nMSE (z-scored, observed targets)") -> Table:
    """A rich table: one row per forecaster, one column per horizon, of ``mean_nmse``."""
    horizons = [str(h) for h in results["settings"]["horizons"]]
    table = Table(title=title)
    table.add_column("forecaster")
    for h in horizons:
        table.add_column(f"{h} h", justify="right")
    for name, figures in results["forecasters"].items():
        cells = [figures["mean_nmse"][h] for h in horizons]
        table.add_row(name, *("-" if v is None else f"{v:.3f}" for v in cells))
    return table
