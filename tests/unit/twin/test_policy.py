"""The reference-selection policy: per-agent contexts, matrices, decisions, save and load."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from organsim.catalog import SYSTEMS
from organsim.twin import PatientTwin, ReferencePolicy, ReferencePolicyConfig
from organsim.twin.policy import POLICY_CONFIG_FILE, POLICY_WEIGHTS_FILE
from organsim.twin.summary import summary_size
from organsim.utils.errors import DataError


def test_decisions_map_onto_the_other_systems():
    policy = ReferencePolicy(ReferencePolicyConfig(systems=SYSTEMS))
    s = len(SYSTEMS)
    summary = torch.randn(5, summary_size(s))
    contexts = policy.contexts(summary)
    assert contexts.shape == (5, s, summary_size(s) + s)
    torch.testing.assert_close(contexts[:, :, -s:], torch.eye(s).expand(5, -1, -1))
    choices = torch.zeros(5, s, s - 1)
    choices[:, 2, 2] = 1  # agent 2's third decision: system 3 (its own, 2, is skipped)
    choices[:, 4, 0] = 1  # agent 4's first: system 0
    matrix = policy.to_matrix(choices)
    assert matrix.dtype == torch.bool and matrix.sum() == 10
    assert matrix[:, 2, 3].all() and matrix[:, 4, 0].all()
    assert not matrix[:, torch.arange(s), torch.arange(s)].any()
    probabilities = policy.probabilities(summary)
    np.testing.assert_array_equal(policy.decide(summary).numpy(), (probabilities > 0.5).float().numpy())
    draws = [policy.decide(summary, torch.Generator().manual_seed(7)) for _ in range(2)]
    torch.testing.assert_close(draws[0], draws[1])


def test_save_and_load_round_trip(tmp_path, micro_model):
    policy = ReferencePolicy(ReferencePolicyConfig(systems=SYSTEMS, hidden_size=16, value_head=True))
    policy.save(tmp_path)
    loaded = ReferencePolicy.load(tmp_path)
    assert loaded.config == policy.config
    for name, tensor in policy.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor)
    summary = torch.randn(3, summary_size(len(SYSTEMS)))
    torch.testing.assert_close(loaded.probabilities(summary), policy.probabilities(summary))
    # a twin loaded from a model directory picks the policy saved there
    assert not PatientTwin.load(micro_model, device="cpu").coordinated
    model_dir = tmp_path / "model"
    shutil.copytree(micro_model, model_dir)
    ReferencePolicy(ReferencePolicyConfig(systems=SYSTEMS)).save(model_dir)
    assert PatientTwin.load(model_dir, device="cpu").coordinated


def test_a_broken_policy_is_reported_with_its_file(tmp_path):
    ReferencePolicy(ReferencePolicyConfig(systems=SYSTEMS)).save(tmp_path)
    (tmp_path / POLICY_CONFIG_FILE).write_text("{not json")
    with pytest.raises(DataError, match=POLICY_CONFIG_FILE):
        ReferencePolicy.load(tmp_path)
    ReferencePolicy(ReferencePolicyConfig(systems=SYSTEMS)).save(tmp_path)
    ReferencePolicy(ReferencePolicyConfig(systems=SYSTEMS, hidden_size=8)).save(tmp_path / "other")
    (tmp_path / POLICY_WEIGHTS_FILE).write_bytes((tmp_path / "other" / POLICY_WEIGHTS_FILE).read_bytes())
    with pytest.raises(DataError, match=POLICY_WEIGHTS_FILE):
        ReferencePolicy.load(tmp_path)
    with pytest.raises(DataError, match="incomplete"):
        ReferencePolicy.load(tmp_path / "missing")
