"""Fidelity of a synthetic cohort to the real data it imitates.

Each measure compares a *reference* cohort (real-train) with a *candidate* (the synthetic cohort,
or real-test as the holdout baseline that shows how far two real samples of the same population
lie apart):

- :func:`distribution_distances`: per variable, the two-sample Kolmogorov-Smirnov statistic
  (``scipy.stats.ks_2samp``) and the 1-Wasserstein distance (``scipy.stats.wasserstein_distance``,
  in the variable's unit, and divided by the reference's standard deviation) of all measured
  hourly values.
- :func:`compare_correlations`: pairwise-complete Pearson correlation matrices of the hourly values
  and their distance (mean and largest absolute difference, Frobenius norm) over the pairs both
  cohorts measure together at least ``min_pairs`` (100) times.
- :func:`sequence_distances`: the same KS/Wasserstein comparison for sequence statistics: stay
  length, per-stay mean and standard deviation of each variable, and hour-to-hour changes (value
  at hour t minus value at hour t-1, where both are measured).
- :func:`missingness_rates`: the fraction of hourly rows without a value, per variable.
- :func:`detection_auroc`: how well a LightGBM classifier tells reference stays from candidate stays
  by their :func:`stay_summaries` (out-of-fold AUROC of a stratified k-fold cross-validation; 0.5
  means indistinguishable).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from scipy import stats
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from organsim.data.cohort import Cohort
from organsim.data.summaries import stay_summaries
from organsim.utils.boosting import lightgbm_classifier

MIN_VALUES = 20
"""Fewest measured values per cohort for a variable's distribution to be compared."""
DETECTION_TREES = 200


def subsample_stays(cohort: Cohort, max_stays: int | None, seed: int) -> Cohort:
    """``cohort`` or a seeded random subset of ``max_stays`` of its stays (for the costlier measures)."""
    if max_stays is None or cohort.stays.height <= max_stays:
        return cohort
    chosen = np.random.default_rng(seed).choice(cohort.stays["stay_id"].to_numpy(), size=max_stays, replace=False)
    return cohort.subset(sorted(chosen.tolist()))


def measured_variables(cohort: Cohort, min_values: int = 1) -> list[str]:
    """Catalog variables with at least ``min_values`` measured hourly values, in catalog order."""
    counts = cohort.hourly.select(pl.col(list(cohort.catalog.variable_codes)).is_not_null().sum()).row(0, named=True)
    return [code for code, n in counts.items() if n >= min_values]


def _sample(values: np.ndarray, max_values: int | None, rng: np.random.Generator) -> np.ndarray:
    """``values``, or a sample of ``max_values`` of them without replacement when there are more."""
    if max_values is None or len(values) <= max_values:
        return values
    return rng.choice(values, size=max_values, replace=False)


def measured_values(cohort: Cohort, variable: str, max_values: int | None = None, seed: int = 0) -> np.ndarray:
    """The measured hourly values of ``variable`` (float64), a seeded sample of ``max_values`` when given."""
    values = cohort.hourly[variable].drop_nulls().to_numpy().astype(np.float64)
    return _sample(values, max_values, np.random.default_rng(seed))


def _compare(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float | int | None]:
    """KS, Wasserstein (raw and / reference std) and the two means and stds of two samples."""
    out: dict[str, float | int | None] = {"n_reference": len(reference), "n_candidate": len(candidate)}
    if len(reference) < MIN_VALUES or len(candidate) < MIN_VALUES:
        return {**out, "ks": None, "wasserstein": None, "wasserstein_normalised": None, "mean_reference": None,
                "mean_candidate": None, "std_reference": None, "std_candidate": None}
    wasserstein = float(stats.wasserstein_distance(reference, candidate))
    scale = float(np.std(reference))
    return {
        **out,
        "ks": float(stats.ks_2samp(reference, candidate, method="asymp").statistic),  # the statistic; no exact p-value
        "wasserstein": wasserstein,
        "wasserstein_normalised": wasserstein / scale if scale > 0 else None,
        "mean_reference": float(np.mean(reference)),
        "mean_candidate": float(np.mean(candidate)),
        "std_reference": scale,
        "std_candidate": float(np.std(candidate)),
    }


def _mean_of(rows: Sequence[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(values)) if values else None


def distribution_distances(
    reference: Cohort, candidate: Cohort, variables: Sequence[str], *, max_values: int = 200_000, seed: int = 0
) -> dict[str, Any]:
    """Per-variable distance between the measured hourly values of two cohorts.

    Parameters
    ----------
    reference, candidate
        The real-train cohort and the cohort compared with it.
    variables
        Catalog codes to compare.
    max_values
        Values per cohort and variable used (a seeded sample beyond it; KS and Wasserstein then
        carry a sampling error of order ``1/sqrt(max_values)``).
    seed
        Seed of the samples.

    Returns
    -------
    dict
        ``per_variable``: ``{variable: {ks, wasserstein, wasserstein_normalised, n_reference,
        n_candidate, mean_*, std_*}}`` (null distances when either side has fewer than
        :data:`MIN_VALUES` values); ``mean_ks`` and ``mean_wasserstein_normalised`` over the
        variables with a distance.
    """
    per_variable = {
        v: _compare(measured_values(reference, v, max_values, seed), measured_values(candidate, v, max_values, seed))
        for v in variables
    }
    rows = list(per_variable.values())
    return {"per_variable": per_variable, "mean_ks": _mean_of(rows, "ks"),
            "mean_wasserstein_normalised": _mean_of(rows, "wasserstein_normalised")}


# ------------------------------------------------------------------------------------------ correlations
def correlation_matrix(cohort: Cohort, variables: Sequence[str], *, min_pairs: int = 100) -> np.ndarray:
    """Pairwise-complete Pearson correlations of the hourly values, ``(V, V)`` float64.

    Entry (i, j) uses the rows where both variables are measured; NaN where fewer than
    ``min_pairs`` such rows exist or either variable is constant on them.
    """
    values = cohort.hourly.select(pl.col(list(variables)).cast(pl.Float64)).to_numpy()  # (rows, V), NaN = missing
    present = (~np.isnan(values)).astype(np.float64)
    filled = np.nan_to_num(values)
    n = present.T @ present  # (V, V): rows where both are measured
    sum_x = filled.T @ present  # (V, V): sum of x_i over rows where j is measured
    sum_xx = (filled**2).T @ present
    sum_xy = filled.T @ filled
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sum_xy - sum_x * sum_x.T / n
        var_i = sum_xx - sum_x**2 / n
        corr = cov / np.sqrt(var_i * var_i.T)
    corr[(n < min_pairs) | ~np.isfinite(corr)] = np.nan
    return np.clip(corr, -1.0, 1.0)


@dataclass
class CorrelationComparison:
    """Correlation matrices of two cohorts over the same variables, and their distance.

    Attributes
    ----------
    variables
        The ``V`` codes of both axes.
    reference, candidate
        ``(V, V)`` correlation matrices (NaN where not estimable).
    """

    variables: list[str]
    reference: np.ndarray
    candidate: np.ndarray

    def summary(self) -> dict[str, Any]:
        """``pairs`` compared (i < j, estimable in both), ``mean_abs_difference``, ``max_abs_difference``, ``frobenius``."""
        upper = np.triu(np.ones_like(self.reference, dtype=bool), k=1)
        both = upper & np.isfinite(self.reference) & np.isfinite(self.candidate)
        difference = (self.reference - self.candidate)[both]
        if not difference.size:
            return {"pairs": 0, "mean_abs_difference": None, "max_abs_difference": None, "frobenius": None}
        return {
            "pairs": int(both.sum()),
            "mean_abs_difference": float(np.mean(np.abs(difference))),
            "max_abs_difference": float(np.max(np.abs(difference))),
            "frobenius": float(np.sqrt(2 * np.sum(difference**2))),  # both triangles of the symmetric difference
        }


def compare_correlations(reference: Cohort, candidate: Cohort, variables: Sequence[str], *, min_pairs: int = 100
                         ) -> CorrelationComparison:
    """Correlation matrices of both cohorts (:func:`correlation_matrix`) for :meth:`CorrelationComparison.summary`."""
    return CorrelationComparison(list(variables), correlation_matrix(reference, variables, min_pairs=min_pairs),
                                 correlation_matrix(candidate, variables, min_pairs=min_pairs))


# ------------------------------------------------------------------------------------------ sequences
def hourly_changes(cohort: Cohort, variable: str) -> np.ndarray:
    """Value at hour t minus value at hour t-1 of the same stay, where both are measured (float64)."""
    frame = cohort.hourly.select("stay_id", "hour", variable).with_columns(
        (pl.col(variable) - pl.col(variable).shift(1)).over("stay_id").alias("change"),
        (pl.col("hour") - pl.col("hour").shift(1)).over("stay_id").alias("gap"),
    )
    return frame.filter((pl.col("gap") == 1) & pl.col("change").is_not_null())["change"].to_numpy().astype(np.float64)


def sequence_distances(
    reference: Cohort, candidate: Cohort, variables: Sequence[str], *, max_values: int = 200_000, seed: int = 0
) -> dict[str, Any]:
    """KS and Wasserstein distances of sequence statistics (see the module docstring).

    Returns
    -------
    dict
        ``stay_length`` (comparison of ``n_hours``), ``per_variable``: ``{variable: {"stay_mean":
        ..., "stay_std": ..., "hourly_change": ...}}`` (each a comparison as in
        :func:`distribution_distances`), and ``mean_ks`` per statistic over the variables.
    """
    summaries = [stay_summaries(c, variables) for c in (reference, candidate)]
    per_variable: dict[str, dict[str, Any]] = {}
    for v in variables:
        rng = np.random.default_rng(seed)
        ref_changes, cand_changes = (_sample(hourly_changes(c, v), max_values, rng) for c in (reference, candidate))
        per_variable[v] = {
            "stay_mean": _compare(*(s[f"{v}_mean"].drop_nulls().to_numpy() for s in summaries)),
            "stay_std": _compare(*(s[f"{v}_std"].drop_nulls().to_numpy() for s in summaries)),
            "hourly_change": _compare(ref_changes, cand_changes),
        }
    statistics = ("stay_mean", "stay_std", "hourly_change")
    return {
        "stay_length": _compare(*(s["n_hours"].to_numpy() for s in summaries)),
        "per_variable": per_variable,
        "mean_ks": {stat: _mean_of([row[stat] for row in per_variable.values()], "ks") for stat in statistics},
    }


def missingness_rates(reference: Cohort, candidate: Cohort, variables: Sequence[str]) -> dict[str, Any]:
    """Fraction of hourly rows without a value, per variable, in both cohorts.

    Returns ``per_variable``: ``{variable: {"reference", "candidate", "abs_difference"}}`` and
    ``mean_abs_difference``.
    """
    rates = []
    for cohort in (reference, candidate):
        n = max(cohort.hourly.height, 1)
        rates.append({v: cohort.hourly[v].null_count() / n for v in variables})
    per_variable = {v: {"reference": rates[0][v], "candidate": rates[1][v],
                        "abs_difference": abs(rates[0][v] - rates[1][v])} for v in variables}
    return {"per_variable": per_variable,
            "mean_abs_difference": float(np.mean([r["abs_difference"] for r in per_variable.values()])) if variables else None}


# ------------------------------------------------------------------------------------------ detection
def detection_auroc(
    reference: Cohort,
    candidate: Cohort,
    variables: Sequence[str],
    *,
    folds: int = 5,
    max_stays: int | None = 3000,
    seed: int = 0,
    threads: int = 1,
) -> dict[str, Any]:
    """Cross-validated AUROC of a classifier telling candidate stays from reference stays.

    Both cohorts are reduced to :func:`stay_summaries`, balanced to the same number of stays (the
    smaller cohort's size, at most ``max_stays``; a seeded sample), and a LightGBM classifier is
    fitted in a stratified ``folds``-fold cross-validation (``threads`` LightGBM threads). The AUROC
    is that of the out-of-fold predictions: 0.5 = indistinguishable, 1.0 = every stay is recognised.

    Returns
    -------
    dict
        ``auroc``, ``fold_aurocs``, ``stays_per_cohort``, ``folds`` and ``top_features``: the ten
        summaries with the largest total split gain, ``[[feature, share of gain], ...]``.
    """
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    frames = [stay_summaries(c, variables).drop("stay_id") for c in (reference, candidate)]
    n = min(f.height for f in frames)
    if max_stays is not None:
        n = min(n, max_stays)
    if n < folds:
        raise ValueError(f"detection needs at least {folds} stays in each cohort, got {n}")
    rng = np.random.default_rng(seed)
    sampled = [f[np.sort(rng.choice(f.height, n, replace=False))] for f in frames]
    features = np.vstack([f.to_numpy().astype(np.float64) for f in sampled])  # (2n, F), NaN = not measured
    labels = np.repeat([0, 1], n)
    names = sampled[0].columns
    out_of_fold = np.zeros(len(labels))
    gain = np.zeros(len(names))
    fold_aurocs = []
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (fit_rows, held_rows) in enumerate(splitter.split(features, labels)):
        model = lightgbm_classifier(seed + fold, DETECTION_TREES, threads=threads).fit(features[fit_rows], labels[fit_rows])
        out_of_fold[held_rows] = model.predict_proba(features[held_rows])[:, 1]
        fold_aurocs.append(float(roc_auc_score(labels[held_rows], out_of_fold[held_rows])))
        gain += model.booster_.feature_importance(importance_type="gain")
    order = np.argsort(-gain, kind="stable")[:10]
    total = gain.sum() or 1.0
    return {
        "auroc": float(roc_auc_score(labels, out_of_fold)),
        "fold_aurocs": fold_aurocs,
        "stays_per_cohort": n,
        "folds": folds,
        "top_features": [[names[i], float(gain[i] / total)] for i in order if gain[i] > 0],
    }
