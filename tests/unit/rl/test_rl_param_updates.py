"""One optimiser step changes every trainable parameter, for every loss variant and trainer."""

import pytest
import torch
from torch import nn

from organsim.rl import (
    AgentPRMConfig,
    BAPOConfig,
    BiRMConfig,
    BiRMHead,
    CategoricalPolicy,
    DVPOConfig,
    DVPOTrainer,
    GRPOConfig,
    GRPOTrainer,
    PolarRewardModel,
    PPOConfig,
    PPOTrainer,
    QuantileCritic,
    SubsetPolicy,
    agentprm_loss,
    birm_loss,
    polar_loss,
)

GRPO_VARIANTS = {
    "grpo": {"loss_type": "grpo"},
    "dr_grpo": {"loss_type": "dr_grpo", "scale_rewards": "none"},
    "dapo": {"loss_type": "dapo", "drop_zero_variance_groups": True},
    "bnpo": {"loss_type": "bnpo", "scale_rewards": "batch"},
    "grpo_sequence_kl": {"loss_type": "grpo", "importance_sampling_level": "sequence", "beta": 0.1},
    "bapo": {"loss_type": "bnpo", "adaptive_clipping": BAPOConfig()},
}


def _snapshot(*modules: nn.Module) -> dict[str, torch.Tensor]:
    return {
        f"{index}.{name}": parameter.detach().clone()
        for index, module in enumerate(modules)
        for name, parameter in module.named_parameters()
        if parameter.requires_grad
    }


def _assert_all_changed(before: dict[str, torch.Tensor], *modules: nn.Module) -> None:
    after = _snapshot(*modules)
    unchanged = [name for name in before if torch.equal(before[name], after[name])]
    assert not unchanged, f"parameters not updated: {unchanged}"


def _grpo(variant: str) -> tuple[list[nn.Module], callable]:
    policy = SubsetPolicy(4, 5)

    def reward_fn(contexts, subsets):
        return torch.randn(subsets.shape[:2])

    config = GRPOConfig(num_generations=4, learning_rate=1e-2, **GRPO_VARIANTS[variant])
    trainer = GRPOTrainer(policy, reward_fn, config, device="cpu")
    return [policy], lambda: trainer.step(torch.randn(6, 4))


def _ppo(chain_walk) -> tuple[list[nn.Module], callable]:
    env = chain_walk(4)
    policy = CategoricalPolicy(env.observation_dim, env.num_actions)
    config = PPOConfig(num_steps=8, num_minibatches=1, update_epochs=1)
    trainer = PPOTrainer(policy, env, config, device="cpu")
    return [policy], lambda: trainer.update(trainer.collect())


def _dvpo(chain_walk) -> tuple[list[nn.Module], callable]:
    env = chain_walk(4)
    policy = CategoricalPolicy(env.observation_dim, env.num_actions, value_head=False)
    critic = QuantileCritic(env.observation_dim, num_heads=2, num_quantiles=5)
    config = DVPOConfig(num_steps=8, num_minibatches=1, update_epochs=1)
    trainer = DVPOTrainer(policy, critic, env, config, device="cpu")
    return [policy, critic], lambda: trainer.update(trainer.collect())


def _supervised_step(modules: list[nn.Module], loss_fn) -> callable:
    optimizer = torch.optim.Adam([p for m in modules for p in m.parameters()], lr=1e-2)

    def step():
        optimizer.zero_grad()
        loss_fn().backward()
        optimizer.step()

    return step


def _agentprm() -> tuple[list[nn.Module], callable]:
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
    steps, outcomes = torch.randn(3, 5, 4), torch.tensor([1.0, 0.0, 1.0])
    mask = torch.tensor([[1.0] * 5, [1.0] * 3 + [0.0] * 2, [1.0] * 4 + [0.0]])

    def loss():
        return agentprm_loss(model(steps).squeeze(-1), outcomes, mask, AgentPRMConfig())[0]

    return [model], _supervised_step([model], loss)


def _birm() -> tuple[list[nn.Module], callable]:
    encoder, head = nn.Sequential(nn.Linear(4, 8), nn.Tanh()), BiRMHead(8)
    steps = torch.randn(3, 5, 4)
    labels, values = (torch.rand(3, 5) > 0.5).float(), torch.rand(3, 5)

    def loss():
        g, h = head(encoder(steps))
        return birm_loss(g, h, labels, values, torch.ones(3, 5), BiRMConfig())[0]

    return [encoder, head], _supervised_step([encoder, head], loss)


def _polar() -> tuple[list[nn.Module], callable]:
    model = PolarRewardModel(3, 8)
    context, reference, same, other = (torch.randn(6, 3), *torch.randn(3, 6, 8))

    def loss():
        return polar_loss(model(context, reference, same), model(context, reference, other))[0]

    return [model], _supervised_step([model], loss)


@pytest.mark.parametrize("variant", [*GRPO_VARIANTS, "ppo", "dvpo", "agentprm", "birm", "polar"])
def test_one_step_updates_every_trainable_parameter(variant, chain_walk):
    torch.manual_seed(0)
    if variant in GRPO_VARIANTS:
        modules, step = _grpo(variant)
    elif variant == "ppo":
        modules, step = _ppo(chain_walk)
    elif variant == "dvpo":
        modules, step = _dvpo(chain_walk)
    else:
        modules, step = {"agentprm": _agentprm, "birm": _birm, "polar": _polar}[variant]()
    before = _snapshot(*modules)
    step()
    _assert_all_changed(before, *modules)
