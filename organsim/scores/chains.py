"""Event-chain comparison between real and simulated trajectories of the same stays.

The questions a clinician asks before believing a simulator: does the simulated patient have the
events the real one had (and no others), in the same order, at about the same time, at about the same
value? Each stay's chain is the first episode of each event type, ordered by onset hour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from organsim.utils.errors import DataError

CHAIN_SEPARATOR = " > "
WITHIN_HOURS = (2, 6, 12)
"""Onset agreement is also reported as the fraction of shared events within these many hours."""


@dataclass(frozen=True)
class EventChainComparison:
    """Result of :func:`compare_event_chains`.

    Attributes
    ----------
    matches
        One row per (stay_id, event) seen in either chain: ``in_real``, ``in_simulated``,
        ``real_onset_hour``, ``simulated_onset_hour``, ``onset_difference_hours`` (simulated - real),
        ``real_trigger_value``, ``simulated_trigger_value``, ``trigger_value_difference``,
        ``real_peak_value``, ``simulated_peak_value``, ``peak_value_difference`` (differences null
        unless the event is in both).
    stays
        One row per compared stay: ``n_real``, ``n_simulated``, ``n_both``, ``chain_real`` and
        ``chain_simulated`` (event codes in onset order, ``" > "``-joined), ``n_ordered_pairs``
        (pairs of shared events), ``order_concordance`` (fraction of those pairs in the same order,
        a tie in either chain counting as agreement; null with fewer than two shared events) and
        ``order_preserved`` (concordance == 1; null likewise).
    summary
        Cohort-level figures: ``n_stays``, ``occurrence`` (precision, recall, F1 of simulated events
        against real ones over all (stay, event) pairs), ``onset_difference_hours`` and
        ``trigger_value_difference`` (mean, median, mean absolute; ``within_<h>h`` fractions for
        onsets), ``order`` (stays with two or more shared events, fraction with the order
        preserved, mean concordance) and ``per_event`` (the same per event code).
    """

    matches: pl.DataFrame
    stays: pl.DataFrame
    summary: dict[str, Any]


def _first_episodes(events: pl.DataFrame, name: str) -> pl.DataFrame:
    needed = ("stay_id", "event", "onset_hour", "trigger_value", "peak_value")
    missing = [c for c in needed if c not in events.columns]
    if missing:
        raise DataError(f"the {name} events frame lacks column(s) {missing}; pass critical_events() output",
                        file=f"<{name} events>", column=missing[0])
    return (
        events.select(pl.col("stay_id").cast(pl.Int64), "event", pl.col("onset_hour").cast(pl.Int64),
                      pl.col("trigger_value").cast(pl.Float64), pl.col("peak_value").cast(pl.Float64))
        .sort("stay_id", "event", "onset_hour")
        .group_by("stay_id", "event", maintain_order=True)
        .first()
    )


def _rates(tp: int, fp: int, fn: int) -> dict[str, float | None]:
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
    return {"precision": precision, "recall": recall, "f1": f1, "true_positive": tp, "false_positive": fp,
            "false_negative": fn}


def _differences(values: np.ndarray, *, within: Sequence[int] = ()) -> dict[str, float | int | None]:
    values = values[~np.isnan(values)]
    if values.size == 0:
        return {"n": 0, "mean": None, "median": None, "mean_absolute": None, **{f"within_{h}h": None for h in within}}
    out: dict[str, float | int | None] = {
        "n": int(values.size),
        "mean": float(values.mean()),
        "median": float(np.median(values)),
        "mean_absolute": float(np.abs(values).mean()),
    }
    out.update({f"within_{h}h": float((np.abs(values) <= h).mean()) for h in within})
    return out


def _summary(matches: pl.DataFrame, stays: pl.DataFrame) -> dict[str, Any]:
    def block(rows: pl.DataFrame) -> dict[str, Any]:
        both = rows.filter(pl.col("in_real") & pl.col("in_simulated"))
        tp = both.height
        fp = rows.filter(~pl.col("in_real") & pl.col("in_simulated")).height
        fn = rows.filter(pl.col("in_real") & ~pl.col("in_simulated")).height
        return {
            "occurrence": _rates(tp, fp, fn),
            "onset_difference_hours": _differences(both["onset_difference_hours"].cast(pl.Float64).to_numpy(),
                                                   within=WITHIN_HOURS),
            "trigger_value_difference": _differences(both["trigger_value_difference"].to_numpy()),
            "peak_value_difference": _differences(both["peak_value_difference"].to_numpy()),
        }

    ordered = stays.filter(pl.col("order_concordance").is_not_null())
    return {
        "n_stays": stays.height,
        **block(matches),
        "order": {
            "n_stays_with_two_shared_events": ordered.height,
            "fraction_order_preserved": float(ordered["order_preserved"].mean()) if ordered.height else None,
            "mean_concordance": float(ordered["order_concordance"].mean()) if ordered.height else None,
        },
        "per_event": {
            event: block(matches.filter(pl.col("event") == event))
            for event in sorted(matches["event"].unique().to_list())
        },
    }


def compare_event_chains(
    real_events: pl.DataFrame,
    simulated_events: pl.DataFrame,
    *,
    stay_ids: Sequence[int] | None = None,
) -> EventChainComparison:
    """Compare the event chains of real and simulated trajectories of the same stays.

    Parameters
    ----------
    real_events, simulated_events
        Episode frames as :func:`~organsim.scores.events.critical_events` (or
        :func:`~organsim.scores.cohort.score_cohort`) returns them; only the first episode of each
        event type per stay is compared.
    stay_ids
        The stays compared (a stay without events in either chain still counts in ``n_stays``).
        Default: every stay with an event in either frame.

    Returns
    -------
    EventChainComparison
        Per (stay, event) matches, per-stay order agreement, and the cohort summary.
    """
    real = _first_episodes(real_events, "real")
    simulated = _first_episodes(simulated_events, "simulated")
    seen = pl.concat([real["stay_id"], simulated["stay_id"]])
    if stay_ids is None:
        ids = seen.unique().sort()
    else:
        ids = pl.Series("stay_id", list(stay_ids), dtype=pl.Int64).unique().sort()
        stray = seen.filter(~seen.is_in(ids.implode()))
        if stray.len():
            raise DataError(f"stay {stray[0]} has events but is not in stay_ids", column="stay_id")
    renamed = {
        name: frame.rename({c: f"{name}_{c}" for c in ("onset_hour", "trigger_value", "peak_value")})
        .with_columns(pl.lit(True).alias(f"in_{name}"))
        for name, frame in (("real", real), ("simulated", simulated))
    }
    matches = (
        renamed["real"].join(renamed["simulated"], on=["stay_id", "event"], how="full", coalesce=True)
        .with_columns(pl.col("in_real").fill_null(False), pl.col("in_simulated").fill_null(False))
        .with_columns(
            (pl.col("simulated_onset_hour") - pl.col("real_onset_hour")).alias("onset_difference_hours"),
            (pl.col("simulated_trigger_value") - pl.col("real_trigger_value")).alias("trigger_value_difference"),
            (pl.col("simulated_peak_value") - pl.col("real_peak_value")).alias("peak_value_difference"),
        )
        .select(
            "stay_id", "event", "in_real", "in_simulated", "real_onset_hour", "simulated_onset_hour",
            "onset_difference_hours", "real_trigger_value", "simulated_trigger_value", "trigger_value_difference",
            "real_peak_value", "simulated_peak_value", "peak_value_difference",
        )
        .sort("stay_id", "event")
    )
    # order agreement over pairs of events present in both chains
    shared = matches.filter(pl.col("in_real") & pl.col("in_simulated")).select(
        "stay_id", "event", "real_onset_hour", "simulated_onset_hour"
    )
    pairs = shared.join(shared, on="stay_id", suffix="_other").filter(pl.col("event") < pl.col("event_other"))
    concordant = (
        (pl.col("real_onset_hour") - pl.col("real_onset_hour_other")).sign()
        * (pl.col("simulated_onset_hour") - pl.col("simulated_onset_hour_other")).sign()
    ) >= 0
    order = pairs.group_by("stay_id").agg(
        pl.len().cast(pl.Int32).alias("n_ordered_pairs"), concordant.mean().alias("order_concordance")
    )

    def chain(frame: pl.DataFrame, name: str) -> pl.DataFrame:
        return frame.sort("stay_id", "onset_hour", "event").group_by("stay_id", maintain_order=True).agg(
            pl.col("event").str.join(CHAIN_SEPARATOR).alias(f"chain_{name}"), pl.len().cast(pl.Int32).alias(f"n_{name}")
        )

    both = shared.group_by("stay_id").agg(pl.len().cast(pl.Int32).alias("n_both"))
    stays = (
        pl.DataFrame({"stay_id": ids})
        .join(chain(real, "real"), on="stay_id", how="left", maintain_order="left")
        .join(chain(simulated, "simulated"), on="stay_id", how="left", maintain_order="left")
        .join(both, on="stay_id", how="left", maintain_order="left")
        .join(order, on="stay_id", how="left", maintain_order="left")
        .with_columns(
            pl.col("n_real").fill_null(0), pl.col("n_simulated").fill_null(0), pl.col("n_both").fill_null(0),
            pl.col("chain_real").fill_null(""), pl.col("chain_simulated").fill_null(""),
            pl.col("n_ordered_pairs").fill_null(0),
            (pl.col("order_concordance") == 1.0).alias("order_preserved"),
        )
        .select("stay_id", "n_real", "n_simulated", "n_both", "chain_real", "chain_simulated",
                "n_ordered_pairs", "order_concordance", "order_preserved")
    )
    return EventChainComparison(matches=matches, stays=stays, summary=_summary(matches, stays))
