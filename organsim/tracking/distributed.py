"""Scale-out of engine cohort generation: stays split into shards, computed by local processes or Ray.

Every stay's trajectory depends only on (engine settings, seed, stay id), never on which stays share
its batch, so generating the stays in shards and concatenating them gives exactly the cohort that
one :meth:`~organsim.physiology.PhysiologyEngine.generate` call would. Each shard's part is a small
cohort directory written atomically (:func:`organsim.utils.shards.run_shards`); a rerun after a lost
worker or an interruption computes only the missing parts, then the parts are merged.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from organsim.data import Cohort
from organsim.physiology import EngineConfig, PhysiologyEngine
from organsim.utils.errors import DataError
from organsim.utils.shards import run_shards

COHORT_FILES = ("stays.parquet", "hourly.parquet", "treatments.parquet", "cohort.json")


def shard_bounds(n_patients: int, shards: int) -> list[tuple[int, int]]:
    """``(first, last)`` stay ids (inclusive) of each shard: ``1 .. n_patients`` cut into near-equal runs.

    >>> shard_bounds(10, 3)
    [(1, 4), (5, 7), (8, 10)]
    """
    if not 1 <= shards <= n_patients:
        raise ValueError(f"shards must lie in 1..{n_patients} (one stay at least per shard), got {shards}")
    runs = np.array_split(np.arange(1, n_patients + 1), shards)
    return [(int(run[0]), int(run[-1])) for run in runs]


def generate_part(settings: dict, bounds: list[tuple[int, int]], index: int) -> dict[str, bytes]:
    """Shard ``index`` of a sharded generation: its stays' cohort directory as ``{file name: bytes}``.

    ``settings`` is :meth:`EngineConfig.to_dict` output (plain data, cheap to ship to a worker).
    """
    first, last = bounds[index]
    engine = PhysiologyEngine(EngineConfig.from_dict(settings), stay_ids=range(first, last + 1))
    cohort = engine.generate()
    with tempfile.TemporaryDirectory(prefix="organsim-part-") as tmp:
        cohort.save(Path(tmp) / "part")
        return {name: (Path(tmp) / "part" / name).read_bytes() for name in COHORT_FILES}


def merge_parts(parts: list[Path], config: EngineConfig) -> Cohort:
    """Concatenate the part cohorts of a sharded generation into the cohort of the whole run.

    Every part must come from ``config`` and hold exactly its shard's stay ids; anything else is a
    :class:`DataError` naming the part (a leftover from another run: delete the parts directory).
    """
    expected = config.to_dict()
    bounds = shard_bounds(config.n_patients, len(parts))
    cohorts = []
    for part, (first, last) in zip(parts, bounds, strict=True):
        cohort = Cohort.load(part)
        if cohort.meta.get("provenance", {}).get("engine") != expected:
            raise DataError(
                "this part was generated with other engine settings; delete the parts directory and run again",
                file=part / "cohort.json",
            )
        if cohort.stay_ids != list(range(first, last + 1)):
            raise DataError(f"this part should hold stays {first}..{last}", file=part / "stays.parquet", column="stay_id")
        cohorts.append(cohort)
    stays = pl.concat([c.stays for c in cohorts])
    provenance = {
        **cohorts[0].meta["provenance"],
        "outcomes": {"septic_stays": int(stays["sepsis"].sum()), "deaths": int(stays["death"].sum())},
    }
    return Cohort.from_frames(
        stays,
        pl.concat([c.hourly for c in cohorts]),
        pl.concat([c.treatments for c in cohorts]),
        source=cohorts[0].meta["source"],
        provenance=provenance,
        catalog=cohorts[0].catalog,
    )


def generate_sharded(
    config: EngineConfig,
    *,
    shards: int,
    parts_dir: str | Path,
    ray_address: str | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Cohort:
    """Generate the cohort of ``config`` in ``shards`` shards and return it merged.

    Parameters
    ----------
    config
        The engine settings (``n_patients`` stays, ids ``1 .. n_patients``).
    shards
        Number of shards (each a contiguous run of stay ids).
    parts_dir
        Where the parts go (``part-XXXX/`` cohort directories); parts already there are reused.
    ray_address
        ``None`` for local processes, ``"local"`` for a Ray cluster on this machine, or the address
        of a running Ray cluster (see :func:`organsim.utils.shards.run_shards`).
    workers
        Local processes or local Ray CPUs (default: all CPUs).
    progress
        ``progress(parts done, shards)``.

    Returns
    -------
    Cohort
        Equal to ``PhysiologyEngine(config).generate()``.
    """
    bounds = shard_bounds(config.n_patients, shards)
    task = functools.partial(generate_part, config.to_dict(), bounds)
    parts = run_shards(task, shards, parts_dir, ray_address=ray_address, workers=workers, progress=progress)
    return merge_parts(parts, config)
