"""What-if outcomes as tables a clinician reads: one row per outcome, one column per strategy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    from organsim.counterfactual import WhatIfResult


SCORE_TITLES = {"sofa": "SOFA", "apache_ii": "APACHE II"}


def outcome_frame(result: WhatIfResult, event_labels: Mapping[str, str]) -> pl.DataFrame:
    """Every outcome of every strategy, long: ``(strategy, outcome, kind, n, mean, q05, q50, q95)``.

    ``kind`` is ``"score"`` (points; SOFA and APACHE II, worst over 24 h, at each reported horizon
    the run reaches), ``"probability"`` (share of futures with the event within the horizon, death
    included) or ``"onset_h"`` (hours after the decision hour, quantiles over the futures with the
    event). ``n`` counts the futures each value rests on.
    """
    rows: list[dict[str, object]] = []
    for name, outcome in result.outcomes.items():
        summary = outcome.summary
        for score in summary.scores.filter(pl.col("n") > 0).iter_rows(named=True):
            rows.append({"strategy": name, "outcome": f"{SCORE_TITLES.get(score['score'], score['score'])} at {score['horizon_hours']} h",
                         "kind": "score", "n": score["n"], "mean": score["mean"], "q05": score["q05"], "q50": score["q50"],
                         "q95": score["q95"]})
        for event in summary.events.iter_rows(named=True):
            label = event_labels.get(event["event"], event["event"])
            rows.append({"strategy": name, "outcome": f"P({label})", "kind": "probability", "n": event["n_samples"],
                         "mean": event["probability"], "q05": None, "q50": None, "q95": None})
            if event["onset_q50"] is not None:
                rows.append({"strategy": name, "outcome": f"{label}: onset (h)", "kind": "onset_h",
                             "n": round(event["probability"] * event["n_samples"]), "mean": None, "q05": event["onset_q05"],
                             "q50": event["onset_q50"], "q95": event["onset_q95"]})
    return pl.DataFrame(rows, schema={"strategy": pl.Utf8, "outcome": pl.Utf8, "kind": pl.Utf8, "n": pl.Int64, "mean": pl.Float64,
                                      "q05": pl.Float64, "q50": pl.Float64, "q95": pl.Float64})


def _cell(kind: str, n: int, mean: float | None, q05: float | None, q50: float | None, q95: float | None) -> str:
    if kind == "probability":
        return f"{mean:.0%}"
    if kind == "onset_h":
        return f"{q50:.0f}" if n <= 1 or q05 == q95 else f"{q50:.0f} ({q05:.0f}-{q95:.0f})"
    if n <= 1 or q05 == q95:
        return f"{mean:.1f}"
    return f"{mean:.1f} ({q05:.1f}-{q95:.1f})"


def outcome_table(result: WhatIfResult, event_labels: Mapping[str, str]) -> pl.DataFrame:
    """:func:`outcome_frame` as text, wide: ``outcome`` then one column per strategy.

    Scores read ``mean (q05-q95)``, probabilities ``37%``, onsets ``median (q05-q95)`` hours after
    the decision hour; an empty cell means the event never happened under that strategy (no onset).
    """
    frame = outcome_frame(result, event_labels)
    order = frame.select("outcome").unique(maintain_order=True)
    cells = frame.select("strategy", "outcome", pl.struct("kind", "n", "mean", "q05", "q50", "q95").map_elements(
        lambda s: _cell(**s), return_dtype=pl.Utf8).alias("value"))
    wide = cells.pivot(on="strategy", index="outcome", values="value")
    return order.join(wide, on="outcome", how="left", maintain_order="left").select("outcome", *result.outcomes)


def correction_summary(corrections: pl.DataFrame, n_samples: int, horizon: int) -> pl.DataFrame:
    """What the twin's error-correction agent changed, per variable and rule.

    Parameters
    ----------
    corrections
        :attr:`organsim.counterfactual.Futures.corrections`: ``(sample, hour, variable, rule,
        before, after)``, one row per changed value (``rule`` a physiological constraint, or
        ``"resampled"`` when the agent redrew the value).
    n_samples, horizon
        Futures and hours simulated (for the share of simulated hours).

    Returns
    -------
    pl.DataFrame
        ``(variable, rule, changes, share_of_hours, median_before, median_after)``, most frequent
        first; ``share_of_hours`` is changes / (n_samples * horizon).
    """
    hours = max(n_samples * horizon, 1)
    return (corrections.group_by("variable", "rule")
            .agg(pl.len().alias("changes"), pl.col("before").median().alias("median_before"),
                 pl.col("after").median().alias("median_after"))
            .with_columns((pl.col("changes") / hours).alias("share_of_hours"))
            .select("variable", "rule", "changes", "share_of_hours", "median_before", "median_after")
            .sort(["changes", "variable", "rule"], descending=[True, False, False]))
