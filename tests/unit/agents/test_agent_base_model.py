"""``--base-model DIR``: a local causal-LM checkpoint as the decoder, with LoRA adapters through peft."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM

from organsim.agents.checkpoint import TrainedAgents
from organsim.agents.forecaster import AgentForecaster
from organsim.agents.training import TrainConfig, train_agents
from organsim.data.windows import choose_starts, forecast_batch


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory):
    """A small pretrained-style causal LM saved with save_pretrained (hidden size 48, not a preset's)."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=100, hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=64)
    path = tmp_path_factory.mktemp("base") / "tiny-llama"
    LlamaForCausalLM(config).save_pretrained(path)
    return path


@pytest.mark.parametrize("lora_r", [0, 2])
def test_base_model_trains_saves_and_reloads(agent_cohort, base_checkpoint, tmp_path, lora_r):
    out = tmp_path / "model"
    config = TrainConfig(max_epochs=1, batch_size=4, n_bins=8, learning_rate=1e-2)
    fields = {"base_model": str(base_checkpoint), "lora_r": lora_r}
    train_agents(agent_cohort, out, preset="micro", train_config=config, agent_fields=fields, device="cpu", show_progress=False)
    agents = TrainedAgents.load(out)
    assert agents.config.hidden_size == 48 and agents.config.base_model == str(base_checkpoint)

    saved = load_file(out / "model.safetensors")
    pretrained = load_file(base_checkpoint / "model.safetensors")
    q_proj = "model.layers.0.self_attn.q_proj.weight"
    backbone = dict(agents.model.backbone.named_parameters())
    if lora_r:
        # only adapters, embeddings and heads are stored; the pretrained weights stay as they were
        assert any("lora_A" in k for k in saved) and not any(k.endswith("q_proj.base_layer.weight") for k in saved)
        assert all(p.requires_grad == ("lora_" in n) for n, p in backbone.items())
        frozen = next(p for n, p in backbone.items() if n.endswith("layers.0.self_attn.q_proj.base_layer.weight"))
        assert torch.equal(frozen, pretrained[q_proj])
        lora_b = next(p for n, p in backbone.items() if "layers.0.self_attn.q_proj.lora_B" in n)
        assert lora_b.abs().sum() > 0  # LoRA B starts at zero: it moved
    else:
        # full fine-tuning stores and changes every decoder weight but the unused token embedding
        assert not torch.equal(backbone["layers.0.self_attn.q_proj.weight"], pretrained[q_proj])
        assert torch.equal(backbone["embed_tokens.weight"], pretrained["model.embed_tokens.weight"])

    test = agent_cohort.subset(split="test")
    starts = choose_starts(test, horizon=3, per_stay=2, min_context=2, seed=0)
    batch = forecast_batch(test, starts, context_hours=8, horizon=3)
    first = AgentForecaster(agents, device="cpu").predict(batch, 3)
    again = AgentForecaster(TrainedAgents.load(out), device="cpu").predict(batch, 3)
    assert np.isfinite(first).all()
    np.testing.assert_array_equal(first, again)


def test_base_model_needs_a_shared_decoder(agent_cohort, base_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="shared"):
        train_agents(agent_cohort, tmp_path / "m", preset="micro", train_config=TrainConfig(max_epochs=1),
                     agent_fields={"base_model": str(base_checkpoint), "backbone_sharing": "separate"}, device="cpu", show_progress=False)
