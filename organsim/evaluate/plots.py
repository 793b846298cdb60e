"""Real vs simulated trajectories: one PNG per organ system for a few held-out stays.

Each figure has one row per stay and one column per variable of the system that any of the
chosen stays measured. A panel shows the stay's observed values over the context and the forecast
horizon (black dots joined where consecutive), a dashed line at the last context hour t, and each
forecaster's free-running forecast of hours t+1..t+H.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from organsim.catalog import SYSTEMS
from organsim.data.cohort import Cohort
from organsim.data.windows import Forecaster, HourlyArrays
from organsim.utils.io import atomic_write_bytes


def plot_trajectories(
    forecasters: Mapping[str, Forecaster],
    cohort: Cohort,
    out_dir: str | Path,
    *,
    n_stays: int = 3,
    horizon: int = 24,
    context_hours: int = 24,
    min_context: int = 3,
    seed: int = 0,
    systems: Sequence[str] = SYSTEMS,
) -> list[Path]:
    """Write ``trajectories_<system>.png`` into ``out_dir`` for each system with observed data.

    Parameters
    ----------
    forecasters
        Name -> forecaster (the legend shows the names).
    cohort
        Where the stays come from (normally the test split).
    out_dir
        Output directory (created when absent); each file is written atomically.
    n_stays
        How many stays to show; they are drawn (seeded) among stays long enough for
        ``min_context + horizon`` hours, with one seeded start hour t each.
    horizon
        Forecast length H in hours.
    context_hours
        Context length C given to the forecasters (and shown).
    min_context
        Fewest of the stay's own hours before t.
    seed
        Seed of the stay and start-hour choice.
    systems
        Which systems to plot.

    Returns
    -------
    list[Path]
        The files written, in system order. A system none of the chosen stays measured is skipped.
    """
    if n_stays < 1:
        raise ValueError(f"n_stays must be >= 1, got {n_stays}")
    arrays = HourlyArrays.from_cohort(cohort)
    candidates = arrays.starts(horizon=horizon, per_stay=1, min_context=min_context, seed=seed)
    if candidates.height == 0:
        raise ValueError(f"no stay in the cohort is long enough for {min_context} context hours and a {horizon}-hour horizon")
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(candidates.height, size=min(n_stays, candidates.height), replace=False))
    starts = candidates[pick]
    batch = arrays.batch(starts, context_hours=context_hours, horizon=horizon)
    truth = arrays.targets(starts, horizon=horizon)  # (n, H, V)
    forecasts = {name: np.asarray(f.predict(batch, horizon)) for name, f in forecasters.items()}
    real = np.concatenate([batch.values, truth], axis=1)  # (n, C + H, V)
    offsets = np.arange(-context_hours + 1, horizon + 1)
    catalog = cohort.catalog
    out_dir = Path(out_dir)
    written = []
    for system in systems:
        columns = [
            (i, v) for i, v in enumerate(batch.variables)
            if catalog.system_of[v] == system and not np.isnan(real[:, :, i]).all()
        ]
        if not columns:
            continue
        figure = Figure(figsize=(3.2 * len(columns), 2.4 * batch.size), layout="constrained")
        axes = figure.subplots(batch.size, len(columns), squeeze=False)
        for row in range(batch.size):
            t = int(batch.start_hours[row])
            hours = t + offsets
            for col, (i, code) in enumerate(columns):
                ax = axes[row, col]
                ax.plot(hours, real[row, :, i], color="black", marker="o", markersize=2.5, linewidth=0.8, label="observed")
                for name, forecast in forecasts.items():
                    ax.plot(hours[context_hours:], forecast[row, :, i], linewidth=1.2, label=name)
                ax.axvline(t, color="grey", linestyle="--", linewidth=0.8)
                ax.set_xlim(hours[0] - 0.5, hours[-1] + 0.5)
                ax.set_title(f"stay {batch.stay_ids[row]}: {code} ({catalog.variable(code).unit})", fontsize=8)
                ax.tick_params(labelsize=7)
                if row == batch.size - 1:
                    ax.set_xlabel("ICU hour", fontsize=7)
        handles, labels = axes[0, 0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8)
        figure.suptitle(f"{system}: observed vs {horizon}-hour free-running forecasts", fontsize=10)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=90)
        written.append(atomic_write_bytes(out_dir / f"trajectories_{system}.png", buffer.getvalue()))
    return written
