"""Run a job as independent shards, locally (a process pool) or on a Ray cluster, one part per shard.

Shard ``i`` is computed by ``task(i)``, which returns the files of its part as ``{name: bytes}``; the
driver writes each part to ``parts_dir/part-<i:04d>/`` atomically the moment it arrives. A part
that is already on disk is never recomputed, so a crashed worker, a failed shard or an interrupted
driver loses only the shards that had not finished: run again and only the missing parts are
computed. Merging the parts is the caller's business.

Backends, by ``ray_address``:

- ``None``: a local pool of ``workers`` processes (spawned, so the task and its arguments must be
  picklable: a module-level function, or a ``functools.partial`` of one); ``workers=1`` runs the
  shards one after the other in this process.
- ``"local"``: a Ray cluster started on this machine for the job (``workers`` CPUs).
- any other string: the address of a running Ray cluster (``ray.init(address=...)``), e.g.
  ``"ray://head:10001"`` or ``"auto"``. Parts travel back to the driver through Ray's object
  store, so the workers need no shared file system.

Ray is an optional dependency (``pip install 'organsim[distributed]'``); it is imported only when a
Ray backend is asked for.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from organsim.utils.errors import OrgansimError
from organsim.utils.io import atomic_directory

ShardTask = Callable[[int], Mapping[str, bytes]]
"""``task(shard_index) -> {file name: content}``: the files of one part."""

ProgressCallback = Callable[[int, int], None]
"""``progress(parts_on_disk, n_shards)``."""

PART_PREFIX = "part-"


class ShardsFailed(OrgansimError):
    """Some shards failed; the parts that finished are on disk and a rerun computes only the rest.

    Attributes
    ----------
    failures
        Shard index -> the error, as text.
    parts_dir
        Where the finished parts are.
    """

    def __init__(self, failures: Mapping[int, str], parts_dir: Path, n_shards: int) -> None:
        self.failures = dict(failures)
        self.parts_dir = parts_dir
        first = min(self.failures)
        super().__init__(
            f"{len(self.failures)} of {n_shards} shards failed (shard {first}: {self.failures[first]}); "
            f"the {n_shards - len(self.failures)} finished parts are kept in {parts_dir}, run again to compute only the missing ones"
        )


def part_path(parts_dir: str | Path, index: int) -> Path:
    """The directory of shard ``index``'s part: ``parts_dir/part-<index:04d>``."""
    return Path(parts_dir) / f"{PART_PREFIX}{index:04d}"


def missing_shards(parts_dir: str | Path, n_shards: int) -> list[int]:
    """Indices in ``0 .. n_shards - 1`` whose part is not on disk yet."""
    return [i for i in range(n_shards) if not part_path(parts_dir, i).is_dir()]


def run_shards(
    task: ShardTask,
    n_shards: int,
    parts_dir: str | Path,
    *,
    ray_address: str | None = None,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> list[Path]:
    """Compute every missing part of a sharded job and return the ``n_shards`` part directories.

    Parameters
    ----------
    task
        ``task(i) -> {file name: bytes}`` for shard ``i``; must be deterministic in ``i``.
    n_shards
        Number of shards (``>= 1``).
    parts_dir
        Directory holding ``part-XXXX/`` subdirectories (created when absent).
    ray_address
        ``None`` (local process pool), ``"local"`` (a Ray cluster on this machine) or the address
        of a running Ray cluster.
    workers
        Processes of the local pool or CPUs of the local Ray cluster (default: all CPUs); unused
        with a remote cluster.
    progress
        Called with ``(parts on disk, n_shards)`` after each part is written.

    Returns
    -------
    list of Path
        ``part_path(parts_dir, i)`` for ``i`` in ``0 .. n_shards - 1``.

    Raises
    ------
    ShardsFailed
        When any shard raised; every other part has been written.
    """
    if n_shards < 1:
        raise ValueError(f"n_shards must be at least 1, got {n_shards}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    parts_dir = Path(parts_dir)
    parts_dir.mkdir(parents=True, exist_ok=True)
    todo = missing_shards(parts_dir, n_shards)
    done = n_shards - len(todo)
    if progress is not None:
        progress(done, n_shards)
    failures: dict[int, str] = {}
    if todo:
        if ray_address is None:
            results = _local_results(task, todo, workers or os.cpu_count() or 1)
        else:
            results = _ray_results(task, todo, ray_address, workers)
        for index, files, error in results:
            if error is not None:
                failures[index] = error
                continue
            _write_part(part_path(parts_dir, index), files)
            done += 1
            if progress is not None:
                progress(done, n_shards)
    if failures:
        raise ShardsFailed(failures, parts_dir, n_shards)
    return [part_path(parts_dir, i) for i in range(n_shards)]


ShardResult = tuple[int, Mapping[str, bytes] | None, str | None]
"""``(index, files, None)`` for a finished shard, ``(index, None, error text)`` for a failed one."""


def _write_part(path: Path, files: Mapping[str, bytes]) -> None:
    with atomic_directory(path, overwrite=False) as tmp:
        for name, content in files.items():
            relative = Path(name)
            if relative.is_absolute() or ".." in relative.parts:
                raise ValueError(f"part file name {name!r} must be a relative path inside the part")
            target = tmp / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _local_results(task: ShardTask, todo: list[int], workers: int) -> Iterator[ShardResult]:
    """Shard results in completion order from a spawned process pool (or this process for one worker)."""
    if workers == 1 or len(todo) == 1:
        for index in todo:
            try:
                yield index, task(index), None
            except Exception as exc:
                yield index, None, _describe(exc)
        return
    context = multiprocessing.get_context("spawn")  # fork is unsafe once polars/torch thread pools exist
    n_workers = min(workers, len(todo))
    threads = max(1, (os.cpu_count() or 1) // n_workers)
    with ProcessPoolExecutor(max_workers=n_workers, mp_context=context, initializer=_share_cores, initargs=(threads,)) as pool:
        futures = {pool.submit(task, index): index for index in todo}
        for future in as_completed(futures):
            index = futures[future]
            try:
                yield index, future.result(), None
            except Exception as exc:  # a task error, or BrokenProcessPool when a worker died
                yield index, None, _describe(exc)


def _share_cores(threads: int) -> None:
    """Worker initialiser: ``threads`` threads for the numeric libraries, so ``W`` workers share the
    cores instead of each starting a pool the size of the machine (set before torch is imported;
    Ray does the same for its tasks)."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "POLARS_MAX_THREADS"):
        os.environ[name] = str(threads)


def _call_shard(task: ShardTask, index: int) -> Mapping[str, bytes]:
    return task(index)


def _ray_results(task: ShardTask, todo: list[int], address: str, workers: int | None) -> Iterator[ShardResult]:
    """Shard results in completion order from Ray tasks (Ray retries a task whose worker died)."""
    try:
        import ray
    except ImportError as exc:
        raise OrgansimError(
            "sharding over Ray needs the optional dependency ray: pip install 'organsim[distributed]' "
            "(or run without a Ray address to use local processes)"
        ) from exc
    started_here = not ray.is_initialized()
    if started_here:
        if address == "local":
            # a cluster started for this job alone, whose driver only waits: its workers run at normal
            # priority, not at Ray's default niceness 15, which yields to every other busy process on
            # the machine (a 2-shard test took 214 s instead of 27 s beside one busy process)
            ray.init(num_cpus=workers or os.cpu_count() or 1, include_dashboard=False, _system_config={"worker_niceness": 0})
        else:
            ray.init(address=address)
    try:
        remote = ray.remote(_call_shard)
        pending = {remote.remote(task, index): index for index in todo}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(ready[0])
            try:
                yield index, ray.get(ready[0]), None
            except ray.exceptions.RayError as exc:
                cause = exc.cause if isinstance(exc, ray.exceptions.RayTaskError) and exc.cause is not None else exc
                yield index, None, _describe(cause)
    finally:
        if started_here:
            ray.shutdown()
