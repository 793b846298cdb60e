"""Synthetic-cohort generation in shards, on local processes or a Ray cluster.

``patients`` stays are cut into ``shards`` near-equal parts. Shard ``i`` fits the generators on the
model's train split (deterministic: every shard fits the same ones), loads the twin and generates
its part with its own seed (``SeedSequence([seed, i])``) and the cohort's septic fraction; its part
is written atomically by :func:`organsim.utils.shards.run_shards`, so a rerun after a lost worker
or an interruption computes only the missing parts. The parts are merged with stay ids renumbered
``1 .. patients`` in shard order. The result depends on (settings, seed, shards): the same call
gives the same cohort, a different number of shards a different (equally valid) one.
"""

from __future__ import annotations

import functools
import json
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl

from organsim.data import Cohort
from organsim.synth.generate import CohortSynthesizer, SynthesisConfig, SynthesisResult
from organsim.synth.training import training_split
from organsim.twin import PatientTwin
from organsim.utils.shards import ProgressCallback, run_shards

COHORT_FILES = ("stays.parquet", "hourly.parquet", "treatments.parquet", "cohort.json")
SUMMARY_FILE = "summary.json"


def shard_sizes(patients: int, shards: int) -> list[int]:
    """Stays of each shard: ``patients`` cut into ``shards`` near-equal parts.

    >>> shard_sizes(10, 3)
    [4, 3, 3]
    """
    if not 1 <= shards <= patients:
        raise ValueError(f"shards must lie in 1..{patients} (one stay at least per shard), got {shards}")
    return [len(part) for part in np.array_split(np.arange(patients), shards)]


def shard_seed(seed: int, index: int) -> int:
    """The seed of shard ``index`` of a run seeded ``seed``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def synthesize_part(model_dir: str, cohort_dir: str, config: SynthesisConfig, initial_hours: int, device: str,
                    sizes: list[int], index: int) -> dict[str, bytes]:
    """Shard ``index``: its synthetic cohort directory and generation summary as ``{file name: bytes}``."""
    synthesizer = CohortSynthesizer.fit(training_split(model_dir, cohort_dir), initial_hours=initial_hours, seed=config.seed)
    twin = PatientTwin.load(model_dir, device=device)
    result = synthesizer.generate(twin, replace(config, patients=sizes[index], seed=shard_seed(config.seed, index)))
    with tempfile.TemporaryDirectory(prefix="organsim-synth-part-") as tmp:
        result.cohort.save(Path(tmp) / "part")
        files = {name: (Path(tmp) / "part" / name).read_bytes() for name in COHORT_FILES if (Path(tmp) / "part" / name).is_file()}
    summary = {key: value for key, value in result.summary().items() if key not in ("stays", "hours", "septic_stays")}
    files[SUMMARY_FILE] = json.dumps(summary).encode()
    return files


def merge_synthetic_parts(parts: list[Path], config: SynthesisConfig) -> SynthesisResult:
    """The parts of a sharded synthesis as one result: stay ids ``1..N`` in shard order, summaries added up."""
    cohorts = [Cohort.load(part) for part in parts]
    summaries = [json.loads((part / SUMMARY_FILE).read_text(encoding="utf-8")) for part in parts]
    stays, hourly, treatments, offset = [], [], [], 0
    for cohort in cohorts:
        mapping = cohort.stays.select(pl.col("stay_id").alias("old"), (pl.int_range(pl.len(), dtype=pl.Int64) + offset + 1).alias("new"))
        renumber = [pl.col("new").alias("stay_id")]
        stays.append(cohort.stays.join(mapping, left_on="stay_id", right_on="old").drop("stay_id").with_columns(renumber)
                     .select(cohort.stays.columns))
        hourly.append(cohort.hourly.join(mapping, left_on="stay_id", right_on="old").drop("stay_id").with_columns(renumber)
                      .select(cohort.hourly.columns))
        if cohort.meta.get("treatments_recorded"):
            treatments.append(cohort.treatments.join(mapping, left_on="stay_id", right_on="old").drop("stay_id")
                              .with_columns(renumber).select(cohort.treatments.columns))
        offset += cohort.stays.height
    first = cohorts[0]
    provenance = {**first.meta["provenance"], "settings": {**first.meta["provenance"].get("settings", {}),
                                                           "patients": config.patients, "seed": config.seed},
                  "shards": len(parts)}
    merged = Cohort.from_frames(pl.concat(stays), pl.concat(hourly), pl.concat(treatments) if treatments else None,
                                source=first.meta["source"], provenance=provenance,
                                treatments_recorded=bool(first.meta.get("treatments_recorded")), catalog=first.catalog)

    def added(key: str) -> dict[str, int]:
        total: Counter[str] = Counter()
        for summary in summaries:
            total.update(summary.get(key, {}))
        return dict(total)

    screens = [s["screen"] for s in summaries if s.get("screen")]
    screen = None
    if screens:  # each shard screened its own pool: counts add up, the shards' AUROCs and shares are averaged
        screen = {"pool": config.screen_pool, "pool_stays": sum(s["pool_stays"] for s in screens),
                  "kept": sum(s["kept"] for s in screens), "shards": len(screens),
                  "closeness_floor": screens[0]["closeness_floor"], "too_close": sum(s["too_close"] for s in screens),
                  **{key: round(float(np.mean([s[key] for s in screens])), 4) for key in ("auroc", "effective_share")}}
    return SynthesisResult(
        cohort=merged, septic_target=sum(s["septic_target"] for s in summaries), candidates=added("candidates"),
        accepted=added("accepted"), rounds=max(s["rounds"] for s in summaries), events=added("events"),
        values_clipped=sum(s["values_clipped"] for s in summaries), screen=screen,
    )


def synthesize_sharded(
    model_dir: str | Path,
    cohort_dir: str | Path,
    config: SynthesisConfig,
    *,
    shards: int,
    parts_dir: str | Path,
    initial_hours: int = 2,
    device: str = "cpu",
    ray_address: str | None = None,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> SynthesisResult:
    """Generate ``config.patients`` synthetic stays in ``shards`` shards (see the module docstring).

    Parameters
    ----------
    model_dir, cohort_dir
        The twin's model directory and the cohort it was trained on (as ``organsim synthesize``).
    config
        The settings of the whole run; each shard gets its share of ``patients`` and its own seed.
    shards
        Number of shards.
    parts_dir
        Where the parts go (``part-XXXX/``); parts already there are reused.
    initial_hours, device
        As :meth:`CohortSynthesizer.fit` and :meth:`PatientTwin.load`.
    ray_address, workers, progress
        As :func:`organsim.utils.shards.run_shards`: ``None`` for local processes, ``"local"`` or a
        cluster address for Ray.
    """
    sizes = shard_sizes(config.patients, shards)
    task = functools.partial(synthesize_part, str(model_dir), str(cohort_dir), config, initial_hours, device, sizes)
    parts = run_shards(task, shards, parts_dir, ray_address=ray_address, workers=workers, progress=progress)
    return merge_synthetic_parts(parts, config)
