"""A shard task for the sharding tests, in a module of its own so spawned workers import only this."""

from __future__ import annotations

import uuid
from pathlib import Path


def square_task(calls: Path, fail_flag: Path, index: int) -> dict[str, bytes]:
    """Record the call; fail for shard 1 while ``fail_flag`` exists; else the part holds index squared."""
    (calls / f"{index}-{uuid.uuid4().hex}").touch()
    if index == 1 and fail_flag.exists():
        raise RuntimeError("worker lost")
    return {"value.txt": str(index * index).encode(), "sub/index.txt": str(index).encode()}


def call_counts(calls: Path) -> dict[int, int]:
    """Shard index -> how many times :func:`square_task` ran it."""
    counts: dict[int, int] = {}
    for file in calls.iterdir():
        index = int(file.name.split("-")[0])
        counts[index] = counts.get(index, 0) + 1
    return counts


def threads_task(index: int) -> dict[str, bytes]:
    """The part holds the OMP_NUM_THREADS the worker was started with."""
    import os

    return {"threads.txt": os.environ.get("OMP_NUM_THREADS", "unset").encode()}
