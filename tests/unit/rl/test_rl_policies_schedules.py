"""Policies, the horizon schedule, device selection and the RL core's import boundary."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import organsim.rl
from organsim.rl import (
    CategoricalPolicy,
    HorizonSchedule,
    SubsetPolicy,
    all_subsets,
    resolve_device,
)


def test_all_subsets_binary_order():
    assert all_subsets(2).tolist() == [[0, 0], [1, 0], [0, 1], [1, 1]]
    with pytest.raises(ValueError, match="num_choices=0"):
        all_subsets(0)


def test_subset_policy_logprobs_match_exact_subset_probabilities():
    torch.manual_seed(0)
    policy = SubsetPolicy(3, 4)
    contexts = torch.randn(5, 3)
    action, logprob, entropy, value = policy.get_action_and_value(contexts)
    assert action.shape == logprob.shape == entropy.shape == (5, 4)
    assert value is None
    probabilities = policy.subset_probabilities(contexts, all_subsets(4))  # (5, 16)
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(5))
    codes = (action * 2 ** torch.arange(4)).sum(-1).long()  # row index in all_subsets
    torch.testing.assert_close(
        logprob.sum(-1).exp(), probabilities.gather(1, codes.unsqueeze(-1)).squeeze(-1)
    )
    # scoring a given action gives the same log-probabilities
    torch.testing.assert_close(policy.get_action_and_value(contexts, action)[1], logprob)


def test_policies_value_heads():
    assert SubsetPolicy(3, 4, value_head=True).get_action_and_value(torch.zeros(2, 3))[3].shape == (
        2,
    )
    action, logprob, entropy, value = CategoricalPolicy(5, 3).get_action_and_value(
        torch.zeros(2, 5)
    )
    assert action.shape == logprob.shape == entropy.shape == value.shape == (2,)
    assert (
        CategoricalPolicy(5, 3, value_head=False).get_action_and_value(torch.zeros(2, 5))[3] is None
    )
    with pytest.raises(ValueError, match="num_actions >= 2"):
        CategoricalPolicy(5, 1)


def test_horizon_schedule_grows_in_stages():
    schedule = HorizonSchedule(horizons=(6, 12, 24), steps_per_stage=100)
    assert [schedule(step) for step in (0, 99, 100, 199, 200, 10_000)] == [6, 6, 12, 12, 24, 24]
    assert schedule.stage(150) == 1
    assert HorizonSchedule(horizons=[6, 12], steps_per_stage=1).horizons == (6, 12)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"horizons": ()}, "non-empty"),
        ({"horizons": (6, 0)}, "non-empty list of ints >= 1"),
        ({"horizons": (12, 6)}, "non-decreasing"),
        ({"steps_per_stage": 0}, "steps_per_stage=0"),
    ],
)
def test_horizon_schedule_rejects_bad_stages(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HorizonSchedule(**kwargs)


def test_resolve_device():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_rl_core_imports_nothing_else_from_organsim():
    package = Path(organsim.rl.__file__).parent
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                assert not name.startswith("organsim") or name.startswith("organsim.rl"), (
                    f"{source.name} imports {name}"
                )
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, organsim.rl; print(sorted(m for m in sys.modules if m.startswith('organsim')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    modules = ast.literal_eval(loaded)
    assert all(m == "organsim" or m.startswith("organsim.rl") for m in modules), modules
