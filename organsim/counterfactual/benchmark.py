"""Counterfactual error against the ground truth of engine cohorts.

On a cohort the physiology engine generated, the true counterfactual is known: the engine re-runs
the same patient with the same noise under the other treatment (:class:`EngineOracle`). The
benchmark picks stays and decision hours (:func:`choose_cases`), runs every strategy through the
oracle and through each simulator under test (:func:`run_futures`), and compares them
(:func:`counterfactual_metrics`):

- **normalised RMSE by horizon per system** (:func:`normalised_rmse`): the RMSE of the simulator's
  point forecast (the median of its samples) against the true value, ``h`` hours into the future
  (``h = 1`` is the decision hour itself), divided by the standard deviation of the true values of
  that variable over all cases, hours and strategies, then averaged over the system's variables;
- **treatment-effect error** per outcome (:func:`effect_metrics`): for each contrast A vs B and
  each case, the estimated effect (mean outcome under A minus under B over the samples) against the
  true effect, for the outcomes of :func:`~organsim.counterfactual.outcomes.stay_means` and the
  variable outcomes of :data:`VARIABLE_OUTCOMES` (MAP 6 hours in); MAE, RMSE, bias and **sign accuracy** (among cases
  whose true effect exceeds the outcome's tolerance, the estimate points the same way), with the agreement on
  negligible effects beside it (:func:`effect_metrics`);
- **coverage** of the simulator's 90 % bands (:func:`band_coverage`): the share of true values
  between the 5th and 95th percentiles of the samples.

Simulators are anything behind :class:`~organsim.counterfactual.futures.Simulator`: the coordinated
twin, the treatment-blind twin and the twin without the overlap adjustment
(:class:`~organsim.counterfactual.twin_simulator.TwinSimulator` and its variants), and
:class:`~organsim.counterfactual.futures.RecordedFuture`, the no-effect reference.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from organsim.catalog import SYSTEMS, Catalog
from organsim.counterfactual.futures import EngineOracle, Futures, Simulator, run_futures
from organsim.counterfactual.outcomes import futures_quantiles, stay_means, summarise_futures
from organsim.counterfactual.strategy import Strategy
from organsim.data import Cohort
from organsim.utils.arrays import nan_quantiles
from organsim.utils.io import atomic_write_text

BENCHMARK_HORIZONS = (1, 6, 24, 48)
"""Hours into the future at which the nRMSE is reported."""
DEFAULT_CONTRASTS = (
    ("liberal_fluids", "restrictive_fluids"),
    ("early_norepinephrine", "late_norepinephrine"),
    ("antibiotics_1h", "antibiotics_6h"),
)
"""The library's strategy pairs whose effect (first minus second) the benchmark scores."""
EFFECT_TOLERANCE = {"sofa": 0.5, "apache_ii": 0.5, "map": 1.0}
"""Score effects within half a point, MAP effects within 1 mmHg count as negligible for the signs;
probabilities (deaths, events) use :data:`PROBABILITY_TOLERANCE`."""
VARIABLE_OUTCOMES = {"map_at_6h": ("map", 6)}
"""Effect outcomes read from one variable ``h`` hours into the future (``h = 1`` is the decision
hour): outcome name -> (variable, h); the mean over a case's samples under A minus under B."""
PROBABILITY_TOLERANCE = 0.05
BAND = (0.05, 0.95)


# ---------------------------------------------------------------------------------------- metrics
def normalised_rmse(predicted: np.ndarray, truth: np.ndarray, scale: np.ndarray, horizons: Sequence[int]) -> np.ndarray:
    """``(len(horizons), V)`` RMSE over cases at each horizon, divided by ``scale``.

    Parameters
    ----------
    predicted, truth
        ``(N, H, V)`` point forecasts and true values; pairs with a NaN on either side are left out.
    scale
        ``(V,)`` normaliser of each variable (its SD over the truth); 0 or NaN gives NaN.
    horizons
        1-based hours into the future (``h`` reads index ``h - 1``); each must be <= ``H``.
    """
    if predicted.shape != truth.shape:
        raise ValueError(f"predicted {predicted.shape} and truth {truth.shape} must have the same shape")
    out = np.full((len(horizons), truth.shape[2]), np.nan)
    for i, horizon in enumerate(horizons):
        if not 1 <= horizon <= truth.shape[1]:
            raise ValueError(f"horizon {horizon} is outside 1..{truth.shape[1]}")
        error = predicted[:, horizon - 1] - truth[:, horizon - 1]  # (N, V)
        count = np.isfinite(error).sum(axis=0)
        squared = np.where(np.isfinite(error), error**2, 0.0).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            rmse = np.sqrt(squared / count)
            out[i] = np.where((count > 0) & (scale > 0), rmse / scale, np.nan)
    return out


def by_system(values: np.ndarray, variables: Sequence[str], catalog: Catalog, horizons: Sequence[int]) -> dict[str, dict[str, float | None]]:
    """``{system: {horizon: mean over the system's variables}}`` of ``(len(horizons), V)`` values (NaN
    variables left out; None when none has a value)."""
    system_of = catalog.system_of
    out: dict[str, dict[str, float | None]] = {}
    for system in SYSTEMS:
        columns = [j for j, code in enumerate(variables) if system_of[code] == system]
        out[system] = {}
        for i, horizon in enumerate(horizons):
            finite = values[i, columns][np.isfinite(values[i, columns])]
            out[system][str(horizon)] = float(finite.mean()) if len(finite) else None
    return out


def band_coverage(lower: np.ndarray, upper: np.ndarray, truth: np.ndarray) -> float | None:
    """Share of finite true values within ``[lower, upper]`` (same shapes); None when none is finite."""
    valid = np.isfinite(truth) & np.isfinite(lower) & np.isfinite(upper)
    if not valid.any():
        return None
    return float(((truth >= lower) & (truth <= upper))[valid].mean())


def effect_metrics(estimated: np.ndarray, true: np.ndarray, *, tolerance: float) -> dict[str, float | int | None]:
    """Error of estimated treatment effects against true ones (``(N,)`` each, NaN pairs left out).

    ``n``, ``mae``, ``rmse`` and ``bias`` cover every case. The signs:

    - ``sign_accuracy``: among the ``n_effect`` cases whose true effect is larger than
      ``tolerance`` either way, the share whose estimate points the same way (an estimate of
      exactly 0 points nowhere); None when no case has such an effect. This is the direction of
      real effects: a simulator blind to treatments, whose every effect is 0, scores 0.
    - ``null_agreement``: among the ``n_null`` other cases, the share whose estimate is within
      ``tolerance`` too (None when there are none).
    - ``three_way_agreement``: over all cases, the share whose estimated and true effects fall in
      the same class of (< -tolerance, within, > +tolerance). Where most true effects are small a
      simulator that always answers "no effect" scores high on it, so it does not measure
      direction; it is kept for comparison with earlier reports.
    """
    valid = np.isfinite(estimated) & np.isfinite(true)
    if not valid.any():
        return {"n": 0, "mae": None, "rmse": None, "bias": None, "sign_accuracy": None, "n_effect": 0,
                "null_agreement": None, "n_null": 0, "three_way_agreement": None}
    est, tru = estimated[valid], true[valid]
    error = est - tru

    def three_way(x: np.ndarray) -> np.ndarray:
        return np.where(np.abs(x) <= tolerance, 0, np.sign(x))

    real = np.abs(tru) > tolerance
    n_effect, n_null = int(real.sum()), int((~real).sum())
    return {"n": int(valid.sum()), "mae": float(np.abs(error).mean()), "rmse": float(np.sqrt((error**2).mean())),
            "bias": float(error.mean()),
            "sign_accuracy": float((np.sign(est[real]) == np.sign(tru[real])).mean()) if n_effect else None,
            "n_effect": n_effect,
            "null_agreement": float((np.abs(est[~real]) <= tolerance).mean()) if n_null else None,
            "n_null": n_null,
            "three_way_agreement": float((three_way(est) == three_way(tru)).mean())}


def _tolerance(outcome: str) -> float:
    for name, tolerance in EFFECT_TOLERANCE.items():
        if outcome.startswith(f"{name}_at_"):
            return tolerance
    return PROBABILITY_TOLERANCE


# ---------------------------------------------------------------------------------------- runs
def choose_cases(
    cohort: Cohort,
    *,
    n_stays: int,
    decision_hours: Sequence[int],
    horizon: int,
    seed: int = 0,
    septic_share: float = 0.5,
) -> pl.DataFrame:
    """``(stay_id, decision_hour)`` cases: ``n_stays`` stays alive at a decision hour drawn from
    ``decision_hours``, whose cohort reaches ``decision_hour + horizon - 1``; about ``septic_share``
    of them septic when the cohort has enough. The same seed gives the same cases."""
    if n_stays < 1 or not decision_hours or horizon < 1:
        raise ValueError("n_stays >= 1, at least one decision hour and horizon >= 1 are required")
    rng = np.random.default_rng(seed)
    last_hour = int(cohort.hourly["hour"].max())
    stays = cohort.stays.join(cohort.hourly.group_by("stay_id").agg(pl.col("hour").max().alias("last")), on="stay_id").sort("stay_id")
    chosen_hours = rng.choice(np.asarray(decision_hours), size=stays.height)
    stays = stays.with_columns(pl.Series("decision_hour", chosen_hours.astype(np.int32)))
    eligible = stays.filter((pl.col("last") >= pl.col("decision_hour")) & (pl.col("decision_hour") + horizon - 1 <= last_hour))
    septic = eligible.filter(pl.col("sepsis").fill_null(False))
    other = eligible.filter(~pl.col("sepsis").fill_null(False))
    n_septic = min(septic.height, int(round(septic_share * n_stays)))
    n_other = min(other.height, n_stays - n_septic)
    n_septic = min(septic.height, n_stays - n_other)
    picks = [part[np.sort(rng.choice(part.height, size=n, replace=False))] for part, n in ((septic, n_septic), (other, n_other)) if n]
    if not picks:
        raise ValueError(f"no stay of the cohort is alive at decision hours {list(decision_hours)} with {horizon} hours to follow")
    return pl.concat(picks).select("stay_id", "decision_hour").sort("stay_id")


@dataclass(frozen=True)
class CaseForecasts:
    """What the metrics need of one simulator's futures (or the truth), case by case.

    Built from futures by :func:`case_forecasts`; the parts of a sharded benchmark carry these
    arrays instead of the futures, and :meth:`concatenate` joins them in case order.

    Attributes
    ----------
    cases
        ``(stay_id, decision_hour)`` of the ``N`` cases, in order.
    first, median, lower, upper, mean
        ``{strategy: (N, H, V)}`` float64 over the variables of the catalog: the first sample (the
        truth of a one-sample oracle), the median, the 90 % band (the 5th and 95th percentiles,
        calibrated when the futures carry a band calibration) and the mean of the samples (NaN
        where no sample has a value).
    stay_means
        ``{strategy: frame}`` of :func:`~organsim.counterfactual.outcomes.stay_means`, one row per
        case, for the strategies of the contrasts.
    n_samples
        Samples per case.
    """

    cases: pl.DataFrame
    first: dict[str, np.ndarray]
    median: dict[str, np.ndarray]
    lower: dict[str, np.ndarray]
    upper: dict[str, np.ndarray]
    mean: dict[str, np.ndarray]
    stay_means: dict[str, pl.DataFrame]
    n_samples: int

    @classmethod
    def concatenate(cls, parts: Sequence[CaseForecasts]) -> CaseForecasts:
        """The cases of ``parts`` one after the other (same strategies and number of samples in each)."""
        if not parts:
            raise ValueError("no parts to concatenate")
        if len({p.n_samples for p in parts}) != 1:
            raise ValueError(f"parts have different numbers of samples: {sorted({p.n_samples for p in parts})}")

        def joined(field: str) -> dict[str, np.ndarray]:
            return {name: np.concatenate([getattr(p, field)[name] for p in parts]) for name in getattr(parts[0], field)}

        return cls(
            cases=pl.concat([p.cases for p in parts]),
            first=joined("first"), median=joined("median"), lower=joined("lower"), upper=joined("upper"), mean=joined("mean"),
            stay_means={name: pl.concat([p.stay_means[name] for p in parts], how="vertical_relaxed") for name in parts[0].stay_means},
            n_samples=parts[0].n_samples,
        )


def case_forecasts(
    futures: Mapping[str, Sequence[Futures]],
    *,
    catalog: Catalog,
    outcome_strategies: Sequence[str],
) -> CaseForecasts:
    """The per-case arrays of ``{strategy: [Futures per case]}`` (see :class:`CaseForecasts`).

    Parameters
    ----------
    futures
        ``{strategy: [Futures per case]}``, the same cases in the same order for every strategy.
    catalog
        The variables (in catalog order) and the scores' definitions.
    outcome_strategies
        Strategies whose per-case outcome means are kept (the two sides of every contrast).
    """
    variables = tuple(catalog.variable_codes)
    names = list(futures)
    if not names or not futures[names[0]]:
        raise ValueError("no futures: give at least one strategy and one case")
    keys = [(f.stay_id, f.decision_hour) for f in futures[names[0]]]
    for name in names:
        if [(f.stay_id, f.decision_hour) for f in futures[name]] != keys:
            raise ValueError(f"strategy {name!r} covers other cases than {names[0]!r}")
    samples = {name: [f.values(variables) for f in futures[name]] for name in names}  # N x (K, H, V)
    # (2, N, H, V); calibrated where the simulator calibrates its bands
    bands = {name: np.stack([futures_quantiles(f, BAND, variables) for f in futures[name]], axis=1) for name in names}
    return CaseForecasts(
        cases=pl.DataFrame(keys, schema={"stay_id": pl.Int64, "decision_hour": pl.Int32}, orient="row"),
        first={name: np.stack([s[0] for s in samples[name]]) for name in names},
        median={name: np.stack([nan_quantiles(s, (0.5,))[0] for s in samples[name]]) for name in names},
        lower={name: bands[name][0] for name in names},
        upper={name: bands[name][1] for name in names},
        mean={name: np.stack([_nan_mean(s) for s in samples[name]]) for name in names},
        stay_means={name: stay_means(summarise_futures(futures[name], catalog=catalog)) for name in outcome_strategies},
        n_samples=int(futures[names[0]][0].n_samples),
    )


def _nan_mean(samples: np.ndarray) -> np.ndarray:
    """``(H, V)`` mean over the samples (``(K, H, V)``) of the finite values; NaN where none is."""
    finite = np.isfinite(samples)
    count = finite.sum(axis=0)
    total = np.where(finite, samples, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def counterfactual_metrics(
    truth: Mapping[str, Sequence[Futures]],
    predicted: Mapping[str, Sequence[Futures]],
    *,
    contrasts: Sequence[tuple[str, str]],
    catalog: Catalog,
    horizons: Sequence[int] = BENCHMARK_HORIZONS,
    scale: np.ndarray | None = None,
) -> dict[str, Any]:
    """Compare a simulator's futures with the true ones (see the module docstring).

    Parameters
    ----------
    truth, predicted
        ``{strategy: [Futures per case]}``, the same strategies and cases in the same order.
    contrasts, catalog, horizons, scale
        As :func:`forecast_metrics`.

    Returns
    -------
    dict
        :func:`forecast_metrics` of the two sides' :func:`case_forecasts`.
    """
    names = list(truth)
    if sorted(names) != sorted(predicted):
        raise ValueError(f"truth has strategies {sorted(names)}, predicted {sorted(predicted)}")
    outcome_strategies = contrasted_strategies(contrasts, names)
    return forecast_metrics(case_forecasts(truth, catalog=catalog, outcome_strategies=outcome_strategies),
                            case_forecasts(predicted, catalog=catalog, outcome_strategies=outcome_strategies),
                            contrasts=contrasts, catalog=catalog, horizons=horizons, scale=scale)


def forecast_metrics(
    truth: CaseForecasts,
    predicted: CaseForecasts,
    *,
    contrasts: Sequence[tuple[str, str]],
    catalog: Catalog,
    horizons: Sequence[int] = BENCHMARK_HORIZONS,
    scale: np.ndarray | None = None,
) -> dict[str, Any]:
    """Compare a simulator's per-case forecasts with the truth's (see the module docstring).

    Parameters
    ----------
    truth
        :func:`case_forecasts` of the true futures: their first sample is the true value.
    predicted
        :func:`case_forecasts` of the simulator's futures: the median is its point forecast, the
        5th-95th percentiles its 90 % band, the mean over samples its variable outcomes.
    contrasts
        ``(A, B)`` strategy pairs whose effect A minus B is scored.
    catalog
        Variables and their systems.
    horizons
        nRMSE horizons, hours into the future.
    scale
        ``(V,)`` normaliser per variable (default: the SD of the true values over every case, hour
        and strategy of ``truth``).

    Returns
    -------
    dict
        ``nrmse`` (``{system: {horizon: value}}`` over all strategies), ``nrmse_by_strategy``,
        ``coverage_90`` (``{system: share}`` and ``all``), ``effects`` (``{"A-B": {outcome:
        effect_metrics}}``), ``n_cases``, ``n_samples``.
    """
    variables = tuple(catalog.variable_codes)
    names = list(truth.first)
    if sorted(names) != sorted(predicted.median):
        raise ValueError(f"truth has strategies {sorted(names)}, predicted {sorted(predicted.median)}")
    if not truth.cases.equals(predicted.cases):
        raise ValueError("truth and predicted cover different cases")
    contrasted_strategies(contrasts, names)
    true_values = truth.first  # (N, H, V) per strategy
    points = predicted.median
    if scale is None:
        pooled = np.concatenate([v.reshape(-1, len(variables)) for v in true_values.values()])
        with np.errstate(invalid="ignore"):
            scale = np.nanstd(pooled, axis=0) if np.isfinite(pooled).any() else np.full(len(variables), np.nan)
    horizon_hours = [h for h in horizons if h <= min(v.shape[1] for v in true_values.values())]
    all_points = np.concatenate([points[n] for n in names])
    all_truth = np.concatenate([true_values[n] for n in names])
    metrics: dict[str, Any] = {
        "n_cases": truth.cases.height,
        "n_samples": predicted.n_samples,
        "nrmse": by_system(normalised_rmse(all_points, all_truth, scale, horizon_hours), variables, catalog, horizon_hours),
        "nrmse_by_strategy": {n: by_system(normalised_rmse(points[n], true_values[n], scale, horizon_hours), variables, catalog,
                                           horizon_hours) for n in names},
    }
    lower = np.concatenate([predicted.lower[n] for n in names])
    upper = np.concatenate([predicted.upper[n] for n in names])
    coverage: dict[str, float | None] = {"all": band_coverage(lower, upper, all_truth)}
    for system in SYSTEMS:
        columns = [j for j, code in enumerate(variables) if catalog.system_of[code] == system]
        coverage[system] = band_coverage(lower[..., columns], upper[..., columns], all_truth[..., columns])
    metrics["coverage_90"] = coverage
    effects: dict[str, Any] = {}
    for a, b in contrasts:
        true_effect = _effects(truth.stay_means[a], truth.stay_means[b])
        estimated = _effects(predicted.stay_means[a], predicted.stay_means[b])
        for outcome, (code, hour) in VARIABLE_OUTCOMES.items():
            if hour <= min(v.shape[1] for v in true_values.values()):
                j = variables.index(code)
                true_effect[outcome] = true_values[a][:, hour - 1, j] - true_values[b][:, hour - 1, j]
                estimated[outcome] = predicted.mean[a][:, hour - 1, j] - predicted.mean[b][:, hour - 1, j]
        effects[f"{a}-{b}"] = {
            outcome: effect_metrics(estimated[outcome], true_effect[outcome], tolerance=_tolerance(outcome))
            for outcome in true_effect
        }
    metrics["effects"] = effects
    return metrics


def contrasted_strategies(contrasts: Sequence[tuple[str, str]], names: Sequence[str]) -> list[str]:
    """The strategies on either side of ``contrasts``, sorted; ValueError naming any not among ``names``."""
    wanted = sorted({n for pair in contrasts for n in pair})
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise ValueError(f"contrast strategies {unknown} were not run (ran: {list(names)})")
    return wanted


def _effects(means_a: pl.DataFrame, means_b: pl.DataFrame) -> dict[str, np.ndarray]:
    """Per case (in ``means_a`` order), outcome -> mean under A minus mean under B."""
    keys = ["stay_id", "decision_hour"]
    paired = means_a.drop("strategy").join(means_b.drop("strategy"), on=keys, suffix="__b", maintain_order="left")
    outcomes = [c for c in means_a.columns if c not in (*keys, "strategy")]
    return {o: paired[o].cast(pl.Float64).fill_null(np.nan).to_numpy() - paired[f"{o}__b"].cast(pl.Float64).fill_null(np.nan).to_numpy()
            for o in outcomes}


def cf_benchmark(
    cohort: Cohort,
    simulators: Sequence[Simulator],
    strategies: Sequence[Strategy],
    *,
    contrasts: Sequence[tuple[str, str]] = DEFAULT_CONTRASTS,
    n_stays: int = 50,
    decision_hours: Sequence[int] = (6, 12, 24),
    horizon: int = 48,
    n_samples: int = 1,
    seed: int = 0,
    out: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """The ground-truth benchmark on an engine cohort: the oracle against each simulator.

    Parameters
    ----------
    cohort
        A cohort the physiology engine generated (its provenance rebuilds the engine).
    simulators
        The simulators scored (each by its ``name``).
    strategies
        The strategies run; must include both sides of every contrast.
    contrasts, n_stays, decision_hours, horizon, seed
        See :func:`choose_cases` and :func:`counterfactual_metrics`.
    n_samples
        Samples per case asked of each simulator.
    out
        Directory to write ``metrics.json`` to (atomically), or None.
    progress
        ``progress(done, total)`` in case-runs.

    Returns
    -------
    dict
        ``cases``, ``strategies``, ``horizon``, ``seed`` and ``simulators`` (name -> the metrics of
        :func:`counterfactual_metrics`).
    """
    names = [s.name for s in strategies]
    outcome_strategies = contrasted_strategies(contrasts, names)
    cases = choose_cases(cohort, n_stays=n_stays, decision_hours=decision_hours, horizon=horizon, seed=seed)
    total = cases.height * len(strategies) * (1 + len(simulators))
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    oracle = EngineOracle.from_cohort(cohort)
    truth = run_futures(oracle, cohort, cases, strategies, horizon=horizon, n_samples=1, seed=seed, progress=advance)
    true_forecasts = case_forecasts(truth, catalog=cohort.catalog, outcome_strategies=outcome_strategies)
    predicted: dict[str, CaseForecasts] = {}
    for simulator in simulators:
        futures = run_futures(simulator, cohort, cases, strategies, horizon=horizon, n_samples=n_samples, seed=seed, progress=advance)
        predicted[simulator.name] = case_forecasts(futures, catalog=cohort.catalog, outcome_strategies=outcome_strategies)
    return benchmark_report(true_forecasts, predicted, strategies=names, contrasts=contrasts, horizon=horizon, seed=seed,
                            truth_name=oracle.name, cohort_source=cohort.meta.get("source"), catalog=cohort.catalog, out=out)


def benchmark_report(
    truth: CaseForecasts,
    predicted: Mapping[str, CaseForecasts],
    *,
    strategies: Sequence[str],
    contrasts: Sequence[tuple[str, str]],
    horizon: int,
    seed: int,
    truth_name: str,
    cohort_source: str | None,
    catalog: Catalog,
    out: str | Path | None = None,
) -> dict[str, Any]:
    """The report of :func:`cf_benchmark` from the truth's and each simulator's per-case forecasts
    (:func:`forecast_metrics` per simulator), written to ``out/metrics.json`` (atomically) when
    ``out`` is given."""
    report = {
        "cohort_source": cohort_source,
        "cases": truth.cases.to_dicts(),
        "strategies": list(strategies),
        "contrasts": [f"{a}-{b}" for a, b in contrasts],
        "horizon": horizon,
        "horizons": list(BENCHMARK_HORIZONS),
        "seed": seed,
        "truth": truth_name,
        "simulators": {name: forecast_metrics(truth, forecasts, contrasts=contrasts, catalog=catalog)
                       for name, forecasts in predicted.items()},
    }
    if out is not None:
        atomic_write_text(Path(out) / "metrics.json", json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report
