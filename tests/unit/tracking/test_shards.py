"""Sharded work: each finished part is kept, a failed shard is the only one recomputed, parts merge exactly."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
from shard_tasks import call_counts, square_task, threads_task

from organsim.physiology import EngineConfig, PhysiologyEngine
from organsim.tracking.distributed import generate_sharded, merge_parts, shard_bounds
from organsim.utils.errors import DataError
from organsim.utils.shards import ShardsFailed, missing_shards, part_path, run_shards


@pytest.mark.parametrize("workers", [1, 2])
def test_failed_shard_keeps_finished_parts_and_rerun_computes_only_it(tmp_path: Path, workers: int) -> None:
    calls, parts, flag = tmp_path / "calls", tmp_path / "parts", tmp_path / "fail"
    calls.mkdir()
    flag.touch()
    task = functools.partial(square_task, calls, flag)
    with pytest.raises(ShardsFailed) as caught:
        run_shards(task, 4, parts, workers=workers)
    assert caught.value.failures.keys() == {1} and "RuntimeError: worker lost" in caught.value.failures[1]
    assert "3 finished parts are kept" in str(caught.value)
    assert missing_shards(parts, 4) == [1]
    assert not list(parts.glob(".*"))  # no temporary directory left behind

    flag.unlink()
    seen = []
    written = run_shards(task, 4, parts, workers=workers, progress=lambda done, total: seen.append((done, total)))
    assert call_counts(calls) == {0: 1, 1: 2, 2: 1, 3: 1}
    assert written == [part_path(parts, i) for i in range(4)]
    assert [int((p / "value.txt").read_text()) for p in written] == [0, 1, 4, 9]
    assert (written[3] / "sub" / "index.txt").read_text() == "3"
    assert seen == [(3, 4), (4, 4)]


def test_local_workers_share_the_cores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("organsim.utils.shards.os.cpu_count", lambda: 8)
    written = run_shards(threads_task, 2, tmp_path / "parts", workers=2)
    assert [(p / "threads.txt").read_text() for p in written] == ["4", "4"]  # 8 cores / 2 workers


def test_run_shards_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_shards"):
        run_shards(lambda i: {}, 0, tmp_path)
    with pytest.raises(ValueError, match="workers"):
        run_shards(lambda i: {}, 2, tmp_path, workers=0)
    with pytest.raises(ValueError, match="must be a relative path"):
        run_shards(lambda i: {"../escape.txt": b""}, 1, tmp_path / "parts", workers=1)


def test_shard_bounds_cover_every_stay_once() -> None:
    assert shard_bounds(10, 3) == [(1, 4), (5, 7), (8, 10)]
    assert shard_bounds(5, 5) == [(i, i) for i in range(1, 6)]
    with pytest.raises(ValueError, match="shards must lie in 1..5"):
        shard_bounds(5, 6)


def test_sharded_generation_equals_one_run_and_rejects_foreign_parts(tmp_path: Path) -> None:
    config = EngineConfig(n_patients=12, hours=12, seed=3)
    whole = PhysiologyEngine(config).generate()
    merged = generate_sharded(config, shards=3, parts_dir=tmp_path / "parts", workers=1)
    assert merged.stays.equals(whole.stays) and merged.hourly.equals(whole.hourly)
    assert merged.treatments.equals(whole.treatments) and merged.meta == whole.meta

    parts = [part_path(tmp_path / "parts", i) for i in range(3)]
    header = parts[1] / "cohort.json"
    meta = json.loads(header.read_text())
    meta["provenance"]["engine"]["seed"] = 4
    header.write_text(json.dumps(meta))
    with pytest.raises(DataError, match="other engine settings") as caught:
        merge_parts(parts, config)
    assert caught.value.file == str(header)
