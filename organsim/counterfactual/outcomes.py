"""What K sampled futures say: quantile bands, SOFA and APACHE II at 24/48/72 h, critical events,
deaths, the systems the agents consulted; and the effect of strategy A vs B over many stays.

Everything here reads :class:`~organsim.counterfactual.futures.Futures`, whatever simulator made
them. Scores come from :func:`organsim.scores.score_trajectories`, called once for all samples of
all futures passed together (each sample scored as a stay: its recorded history, then its future).

Outcomes of a sample (one row of :attr:`OutcomeSummary.sample_outcomes`):

- ``sofa_at_<H>h`` / ``apache_ii_at_<H>h``: the worst-over-24-hours SOFA (``sofa_24h``) and APACHE II
  (``apache_ii_24h``) at ICU hour ``decision_hour + H - 1``, the end of the ``H``-th hour under the
  strategy; null when the sample died before it or the horizon does not reach it;
- ``died``: death within the horizon, ``death_hour``;
- ``<event>_onset_h``: hours from the decision hour to the first hour within the horizon in which
  the event (a critical event of the catalog, or ``sepsis3`` onset) is present (0 when it is
  already present at the decision hour); null when it is not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import polars.selectors as cs

from organsim.catalog import Catalog, load_catalog
from organsim.counterfactual.futures import Futures
from organsim.scores import SEPSIS_EVENT, score_trajectories
from organsim.utils.arrays import nan_quantiles

HORIZONS_HOURS = (24, 48, 72)
"""Hours after the decision hour at which scores are reported."""
BAND_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
SCORES = {"sofa": "sofa_24h", "apache_ii": "apache_ii_24h"}
"""Outcome score name -> the worst-over-24-hours column of :func:`organsim.scores.score_trajectories`."""


def _quantile_name(q: float) -> str:
    return f"q{round(q * 100):02d}"


@dataclass(frozen=True)
class OutcomeSummary:
    """The outcome distribution of one stay's futures under one strategy.

    Attributes
    ----------
    stay_id, decision_hour, horizon, strategy, simulator, n_samples
        What was simulated.
    bands
        ``(hour, variable, n, q05, q25, q50, q75, q95)`` quantiles over the samples alive and
        measured in each hour (``n`` of them), one row per hour of the horizon and variable.
    sample_outcomes
        One row per sample (module docstring).
    scores
        ``(score, horizon_hours, n, mean, sd, q05, q25, q50, q75, q95)`` over samples with a value.
    events
        ``(event, probability, n_samples, onset_q05, onset_q50, onset_q95)``: share of samples with
        the event in the horizon and quantiles of its onset (hours after the decision hour); the row
        ``death`` is death within the horizon.
    consulted
        ``(system, consulted, share)``: the share of agent-hours in which ``system``'s agent consulted
        ``consulted``; None when the simulator has no organ agents.
    """

    stay_id: int
    decision_hour: int
    horizon: int
    strategy: str
    simulator: str
    n_samples: int
    bands: pl.DataFrame
    sample_outcomes: pl.DataFrame
    scores: pl.DataFrame
    events: pl.DataFrame
    consulted: pl.DataFrame | None


def futures_quantiles(futures: Futures, quantiles: Sequence[float], codes: Sequence[str] | None = None) -> np.ndarray:
    """``(Q, H, V)`` quantiles of ``codes`` (default: every variable) over the samples, hour by hour:
    calibrated by the futures' :attr:`~Futures.band_calibration` when they carry one
    (:meth:`organsim.twin.calibration.BandCalibration.apply`), else the raw sample quantiles."""
    codes = tuple(futures.variables if codes is None else codes)
    values = futures.values(codes)  # (K, H, V)
    if futures.band_calibration is None:
        return nan_quantiles(values, quantiles)
    raw = nan_quantiles(values, (*quantiles, 0.5))
    return futures.band_calibration.apply(raw[:-1], quantiles, raw[-1], codes)


def quantile_bands(futures: Futures, quantiles: Sequence[float] = BAND_QUANTILES) -> pl.DataFrame:
    """``(hour, variable, n, q..)`` quantiles of each variable over the samples, hour by hour (NaN
    where no sample has a value; calibrated when the futures carry a band calibration)."""
    values = futures.values(futures.variables)  # (K, H, V)
    counts = np.isfinite(values).sum(axis=0)  # (H, V)
    bands = futures_quantiles(futures, quantiles)  # (Q, H, V)
    hours = np.arange(futures.decision_hour, futures.decision_hour + futures.horizon)
    n_h, n_v = counts.shape
    columns: dict[str, object] = {
        "hour": np.repeat(hours, n_v).astype(np.int32),
        "variable": np.tile(np.array(futures.variables), n_h),
        "n": counts.reshape(-1).astype(np.int32),
    }
    for i, q in enumerate(quantiles):
        columns[_quantile_name(q)] = bands[i].reshape(-1)
    return pl.DataFrame(columns)


def _sample_outcomes(
    futures: Futures, scores: pl.DataFrame, events: pl.DataFrame, key_offset: int, horizons: Sequence[int], event_codes: Sequence[str]
) -> pl.DataFrame:
    k = futures.n_samples
    out: dict[str, object] = {
        "sample": np.arange(k, dtype=np.int32),
        "died": np.isfinite(futures.death_hour),
        "death_hour": futures.death_hour.astype(np.float64),
    }
    own = scores.filter(pl.col("stay_id").is_between(key_offset, key_offset + k - 1))
    for horizon in horizons:
        hour = futures.decision_hour + horizon - 1
        at = own.filter(pl.col("hour") == hour)
        for name, column in SCORES.items():
            value = np.full(k, np.nan)
            if horizon <= futures.horizon and at.height:
                rows = at["stay_id"].to_numpy() - key_offset
                value[rows] = at[column].cast(pl.Float64).to_numpy()
            alive = ~(futures.death_hour <= hour)
            out[f"{name}_at_{horizon}h"] = np.where(alive, value, np.nan)
    window = events.filter(
        pl.col("stay_id").is_between(key_offset, key_offset + k - 1)
        & (pl.col("offset_hour") >= futures.decision_hour)
        & (pl.col("onset_hour") <= futures.last_hour)
    ).with_columns((pl.max_horizontal("onset_hour", pl.lit(futures.decision_hour)) - futures.decision_hour).alias("after"))
    first = window.group_by("stay_id", "event").agg(pl.col("after").min())
    for code in event_codes:
        onset = np.full(k, np.nan)
        rows = first.filter(pl.col("event") == code)
        onset[rows["stay_id"].to_numpy() - key_offset] = rows["after"].to_numpy()
        out[f"{code}_onset_h"] = onset
    return pl.DataFrame(out).with_columns(cs.float().fill_nan(None))


def _score_summary(outcomes: pl.DataFrame, horizons: Sequence[int], quantiles: Sequence[float]) -> pl.DataFrame:
    rows = []
    for name in SCORES:
        for horizon in horizons:
            values = outcomes[f"{name}_at_{horizon}h"].drop_nulls().to_numpy().astype(np.float64)
            row: dict[str, object] = {"score": name, "horizon_hours": horizon, "n": len(values),
                                      "mean": float(values.mean()) if len(values) else None,
                                      "sd": float(values.std(ddof=1)) if len(values) > 1 else None}
            for q in quantiles:
                row[_quantile_name(q)] = float(np.quantile(values, q)) if len(values) else None
            rows.append(row)
    return pl.DataFrame(rows, schema={"score": pl.Utf8, "horizon_hours": pl.Int32, "n": pl.Int32, "mean": pl.Float64,
                                      "sd": pl.Float64, **{_quantile_name(q): pl.Float64 for q in quantiles}})


def _event_summary(outcomes: pl.DataFrame, futures: Futures, event_codes: Sequence[str]) -> pl.DataFrame:
    k = futures.n_samples
    rows = []
    onsets = {code: outcomes[f"{code}_onset_h"].drop_nulls().to_numpy() for code in event_codes}
    onsets["death"] = futures.death_hour[np.isfinite(futures.death_hour)] - futures.decision_hour
    for code, values in onsets.items():
        quantiles = np.quantile(values, (0.05, 0.5, 0.95)) if len(values) else (None, None, None)
        rows.append({"event": code, "probability": len(values) / k, "n_samples": k,
                     "onset_q05": None if quantiles[0] is None else float(quantiles[0]),
                     "onset_q50": None if quantiles[1] is None else float(quantiles[1]),
                     "onset_q95": None if quantiles[2] is None else float(quantiles[2])})
    return pl.DataFrame(rows, schema={"event": pl.Utf8, "probability": pl.Float64, "n_samples": pl.Int32,
                                      "onset_q05": pl.Float64, "onset_q50": pl.Float64, "onset_q95": pl.Float64})


def _consulted_summary(futures: Futures) -> pl.DataFrame | None:
    """Share of each agent's simulated hours (``K x horizon``) in which it consulted each other system."""
    if futures.consulted is None:
        return None
    agent_hours = futures.n_samples * futures.horizon
    return (futures.consulted.group_by("system", "consulted").len("n")
            .select("system", "consulted", (pl.col("n") / agent_hours).alias("share")).sort("system", "consulted"))


def summarise_futures(
    futures: Sequence[Futures],
    *,
    horizons: Sequence[int] = HORIZONS_HOURS,
    quantiles: Sequence[float] = BAND_QUANTILES,
    catalog: Catalog | None = None,
) -> list[OutcomeSummary]:
    """Summarise each :class:`Futures` (module docstring); all samples are scored in one call.

    Parameters
    ----------
    futures
        Futures of any stays and strategies.
    horizons
        Hours after the decision hour at which SOFA and APACHE II are reported.
    quantiles
        Band quantiles, in (0, 1).
    catalog
        Default :func:`load_catalog`.

    Returns
    -------
    list[OutcomeSummary]
        One per element of ``futures``, in order.
    """
    catalog = catalog or load_catalog()
    if not futures:
        return []
    if any(not 0 < q < 1 for q in quantiles):
        raise ValueError(f"quantiles must lie in (0, 1), got {list(quantiles)}")
    offsets = np.concatenate([[0], np.cumsum([f.n_samples for f in futures])[:-1]]).astype(np.int64)
    hourly_parts, treatment_parts, stay_parts = [], [], []
    for future, offset in zip(futures, offsets, strict=True):
        hourly, treatments = future.trajectories(int(offset))
        hourly_parts.append(hourly)
        treatment_parts.append(treatments)
        age = float(future.stay["age"][0]) if "age" in future.stay.columns and future.stay.height else None
        stay_parts.append(pl.DataFrame({"stay_id": np.arange(future.n_samples, dtype=np.int64) + offset,
                                        "age": [age] * future.n_samples}, schema={"stay_id": pl.Int64, "age": pl.Float64}))
    scores = score_trajectories(pl.concat(hourly_parts, how="diagonal_relaxed"), pl.concat(treatment_parts, how="diagonal_relaxed"),
                                pl.concat(stay_parts), catalog=catalog)
    event_codes = [e.code for e in catalog.events] + [SEPSIS_EVENT]
    summaries = []
    for future, offset in zip(futures, offsets, strict=True):
        outcomes = _sample_outcomes(future, scores.hourly, scores.events, int(offset), horizons, event_codes)
        summaries.append(OutcomeSummary(
            stay_id=future.stay_id,
            decision_hour=future.decision_hour,
            horizon=future.horizon,
            strategy=future.strategy,
            simulator=future.simulator,
            n_samples=future.n_samples,
            bands=quantile_bands(future, quantiles),
            sample_outcomes=outcomes,
            scores=_score_summary(outcomes, horizons, quantiles),
            events=_event_summary(outcomes, future, event_codes),
            consulted=_consulted_summary(future),
        ))
    return summaries


def outcome_columns(summary: OutcomeSummary) -> list[str]:
    """The outcome columns of ``summary.sample_outcomes`` that a trial compares (``died`` and every
    score and event onset; an event's column stands for its occurrence)."""
    return [c for c in summary.sample_outcomes.columns if c not in ("sample", "death_hour")]


def stay_means(summaries: Sequence[OutcomeSummary]) -> pl.DataFrame:
    """Per (stay_id, decision_hour, strategy): the mean of each outcome over the samples.

    Scores average over the samples that have one; ``died`` and ``<event>_onset_h`` become the
    probability of death and of the event (column ``<event>``: share of samples where it occurred).
    """
    rows = []
    for summary in summaries:
        outcomes = summary.sample_outcomes
        row: dict[str, object] = {"stay_id": summary.stay_id, "decision_hour": summary.decision_hour, "strategy": summary.strategy,
                                  "died": float(outcomes["died"].cast(pl.Float64).mean())}
        for column in outcome_columns(summary):
            if column.endswith("_onset_h"):
                row[column.removesuffix("_onset_h")] = float(outcomes[column].is_not_null().mean())
            elif column != "died":
                row[column] = outcomes[column].mean()
        rows.append(row)
    return pl.DataFrame(rows, infer_schema_length=None)


def bootstrap_mean_ci(values: np.ndarray, *, n_bootstrap: int, confidence: float, rng: np.random.Generator) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (``(n,)``, finite)."""
    if len(values) == 0:
        return (float("nan"), float("nan"))
    draws = rng.integers(0, len(values), size=(n_bootstrap, len(values)))
    means = values[draws].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, (tail, 1.0 - tail))
    return float(low), float(high)


def trial_effect(
    arm_a: Sequence[OutcomeSummary],
    arm_b: Sequence[OutcomeSummary],
    *,
    n_bootstrap: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pl.DataFrame:
    """The virtual-trial effect of strategy A vs B over the same stays, with bootstrap intervals.

    Each stay contributes the difference of its per-stay outcome means (:func:`stay_means`, A minus
    B); the effect is the mean difference over stays, its interval a percentile bootstrap over stays
    (paired: a resampled stay brings both arms). Stays without a value in either arm are left out
    of that outcome (``n_stays`` counts the rest).

    Returns
    -------
    pl.DataFrame
        ``(outcome, n_stays, mean_a, mean_b, effect, ci_low, ci_high)``, one row per outcome.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    means_a, means_b = stay_means(arm_a), stay_means(arm_b)
    keys = ["stay_id", "decision_hour"]
    if means_a.select(keys).sort(keys).to_dicts() != means_b.select(keys).sort(keys).to_dicts():
        raise ValueError("the two arms must cover the same (stay_id, decision_hour) cases")
    paired = means_a.drop("strategy").join(means_b.drop("strategy"), on=keys, suffix="__b")
    rng = np.random.default_rng(seed)
    rows = []
    for outcome in (c for c in means_a.columns if c not in (*keys, "strategy")):
        a = paired[outcome].cast(pl.Float64).to_numpy()
        b = paired[f"{outcome}__b"].cast(pl.Float64).to_numpy()
        keep = np.isfinite(a) & np.isfinite(b)
        difference = a[keep] - b[keep]
        low, high = bootstrap_mean_ci(difference, n_bootstrap=n_bootstrap, confidence=confidence, rng=rng)
        rows.append({"outcome": outcome, "n_stays": int(keep.sum()),
                     "mean_a": float(a[keep].mean()) if keep.any() else None,
                     "mean_b": float(b[keep].mean()) if keep.any() else None,
                     "effect": float(difference.mean()) if keep.any() else None,
                     "ci_low": low if keep.any() else None, "ci_high": high if keep.any() else None})
    return pl.DataFrame(rows, schema={"outcome": pl.Utf8, "n_stays": pl.Int32, "mean_a": pl.Float64, "mean_b": pl.Float64,
                                      "effect": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64})
