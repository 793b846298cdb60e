"""The trainer under several processes (torch.distributed, as `accelerate launch --multi_gpu` runs it), on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.exclusive  # one rendezvous port or one local cluster at a time (tests/conftest.py)

SCRIPT = """
import json, sys
sys.path.insert(0, {helpers!r})
from accelerate import PartialState
from agent_cohorts import synthetic_agent_cohort
from organsim.agents.training import TrainConfig, train_agents
from organsim.catalog import load_catalog

cohort = synthetic_agent_cohort(load_catalog(), n_stays=24).split((0.5, 0.25, 0.25), seed=0)
result = train_agents(cohort, sys.argv[1], preset="micro", device="cpu", show_progress=False,
                      train_config=TrainConfig(max_epochs=2, batch_size=4, n_bins=8))
state = PartialState()
history = [[r.train_loss, r.validation_loss, r.steps] for r in result.history]
with open(f"{{sys.argv[1]}}-rank{{state.process_index}}.json", "w") as handle:
    json.dump({{"rank": state.process_index, "world": state.num_processes, "history": history}}, handle)
"""


@pytest.mark.slow
def test_two_processes_train_one_model(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(helpers=str(Path(__file__).resolve().parents[2] / "unit" / "agents")))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script), str(tmp_path / "model")],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    results = [json.loads((tmp_path / f"model-rank{rank}.json").read_text()) for rank in (0, 1)]
    assert sorted(r["rank"] for r in results) == [0, 1] and all(r["world"] == 2 for r in results)
    assert results[0]["history"] == results[1]["history"]  # losses are reduced over both processes
    assert len(results[0]["history"]) == 2
    document = json.loads((tmp_path / "model" / "config.json").read_text())
    assert document["training"]["state"]["epoch"] == 2  # written once, by the main process
