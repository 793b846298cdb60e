"""Sharding over a local Ray cluster: the sharded cohort equals one run; a failed shard is the only one redone."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from organsim.physiology import EngineConfig, PhysiologyEngine
from organsim.tracking.distributed import generate_sharded
from organsim.utils.shards import ShardsFailed, missing_shards, run_shards

pytestmark = pytest.mark.exclusive  # one rendezvous port or one local cluster at a time (tests/conftest.py)

ray = pytest.importorskip("ray", reason="the optional extra organsim[distributed] (ray) is not installed")


@pytest.mark.slow
def test_ray_sharding_generates_the_same_cohort_and_redoes_only_failed_shards(tmp_path: Path) -> None:
    config = EngineConfig(n_patients=9, hours=8, seed=5)
    merged = generate_sharded(config, shards=3, parts_dir=tmp_path / "parts", ray_address="local", workers=2)
    whole = PhysiologyEngine(config).generate()
    assert merged.hourly.equals(whole.hourly) and merged.treatments.equals(whole.treatments) and merged.stays.equals(whole.stays)
    assert not ray.is_initialized()  # the cluster started for the job is shut down with it

    calls, flag = tmp_path / "calls", tmp_path / "fail"
    calls.mkdir()
    flag.touch()

    def task(index: int) -> dict[str, bytes]:  # a closure: Ray ships it by value to its workers
        (calls / f"{index}-{uuid.uuid4().hex}").touch()
        if index == 2 and flag.exists():
            raise ValueError("shard 2 lost its data")
        return {"value.txt": str(index).encode()}

    ray.init(num_cpus=2, include_dashboard=False)  # a cluster that outlives the jobs: both runs use it
    try:
        with pytest.raises(ShardsFailed) as caught:
            run_shards(task, 4, tmp_path / "toy", ray_address="local")
        assert list(caught.value.failures) == [2] and "ValueError: shard 2 lost its data" in caught.value.failures[2]
        assert missing_shards(tmp_path / "toy", 4) == [2]
        flag.unlink()
        run_shards(task, 4, tmp_path / "toy", ray_address="local")
        assert ray.is_initialized()  # not shut down by a job that did not start it
    finally:
        ray.shutdown()
    assert sorted(int(f.name.split("-")[0]) for f in calls.iterdir()) == [0, 1, 2, 2, 3]
    assert missing_shards(tmp_path / "toy", 4) == []


@pytest.mark.slow
def test_a_local_cluster_started_for_a_job_runs_its_workers_at_normal_priority(tmp_path: Path) -> None:
    """Ray starts its workers at niceness 15, so beside any busy process they starve; a cluster
    organsim starts for one job runs them at the driver's niceness (0)."""
    def task(index: int) -> dict[str, bytes]:
        return {"niceness.txt": str(os.nice(0)).encode()}

    parts = run_shards(task, 1, tmp_path / "nice", ray_address="local", workers=1)
    assert (Path(parts[0]) / "niceness.txt").read_text() == str(os.nice(0))
    assert not ray.is_initialized()
