"""Trainer behaviour: batches, schedules, dropped groups, reference policy, checks, devices."""

import pytest
import torch

from organsim.rl import (
    CategoricalPolicy,
    DVPOConfig,
    DVPOTrainer,
    GRPOConfig,
    GRPOTrainer,
    HorizonSchedule,
    PPOConfig,
    PPOTrainer,
    QuantileCritic,
    SubsetPolicy,
)


def _random_rewards(contexts, subsets):
    return torch.randn(subsets.shape[:2])


def test_grpo_trainer_passes_the_scheduled_horizon_to_the_reward():
    seen = []

    def reward_fn(contexts, subsets, horizon):
        seen.append(horizon)
        return subsets.sum(-1) * horizon

    trainer = GRPOTrainer(
        SubsetPolicy(3, 4),
        reward_fn,
        GRPOConfig(num_generations=4),
        device="cpu",
        horizon_schedule=HorizonSchedule(horizons=(2, 4), steps_per_stage=2),
    )
    logged = [trainer.step(torch.randn(5, 3))["schedule/horizon"] for _ in range(4)]
    assert seen == [2, 2, 4, 4]
    assert logged == [2.0, 2.0, 4.0, 4.0]
    assert trainer.global_step == 4


def test_grpo_trainer_batch_layout():
    torch.manual_seed(0)
    trainer = GRPOTrainer(
        SubsetPolicy(3, 4), _random_rewards, GRPOConfig(num_generations=4), device="cpu"
    )
    contexts = torch.randn(5, 3)
    batch = trainer.generate(contexts)
    assert batch.actions.shape == batch.old_logprobs.shape == batch.mask.shape == (20, 4)
    assert batch.advantages.shape == (20,) and batch.rewards.shape == (5, 4)
    assert batch.ref_logprobs is None
    torch.testing.assert_close(batch.contexts[4:8], contexts[1].expand(4, 3))  # group 1
    torch.testing.assert_close(batch.advantages.view(5, 4).sum(-1), torch.zeros(5))


def test_grpo_trainer_drops_zero_variance_groups_and_skips_empty_updates():
    policy = SubsetPolicy(3, 4)
    before = [p.detach().clone() for p in policy.parameters()]

    def constant(contexts, subsets):
        return torch.ones(subsets.shape[:2])

    config = GRPOConfig(num_generations=4, drop_zero_variance_groups=True)
    trainer = GRPOTrainer(policy, constant, config, device="cpu")
    assert trainer.generate(torch.randn(5, 3)).actions.shape[0] == 0
    metrics = trainer.step(torch.randn(5, 3))
    assert metrics["reward/zero_variance_fraction"] == 1.0
    assert not any(name.startswith("losses/") for name in metrics)
    assert all(torch.equal(b, p) for b, p in zip(before, policy.parameters(), strict=True))


def test_grpo_trainer_keeps_the_reference_policy_frozen():
    torch.manual_seed(0)
    config = GRPOConfig(num_generations=4, beta=0.1, num_iterations=2)
    trainer = GRPOTrainer(SubsetPolicy(3, 4), _random_rewards, config, device="cpu")
    reference = [p.detach().clone() for p in trainer.ref_policy.parameters()]
    metrics = [trainer.step(torch.randn(5, 3)) for _ in range(3)][-1]
    assert all(not p.requires_grad for p in trainer.ref_policy.parameters())
    assert all(
        torch.equal(r, p) for r, p in zip(reference, trainer.ref_policy.parameters(), strict=True)
    )
    assert metrics["losses/kl"] > 0.0
    assert {"clip/low_fraction", "clip/high_fraction", "losses/approx_kl"} <= set(metrics)


def test_grpo_trainer_rejects_rewards_of_the_wrong_shape():
    def flat(contexts, subsets):
        return torch.zeros(subsets.shape[0] * subsets.shape[1])

    trainer = GRPOTrainer(SubsetPolicy(3, 4), flat, GRPOConfig(num_generations=4), device="cpu")
    with pytest.raises(ValueError, match=r"expected \(num_contexts, num_generations\) = \(5, 4\)"):
        trainer.step(torch.randn(5, 3))


def test_ppo_trainer_checks_minibatches_and_value_head(chain_walk):
    env = chain_walk(3)
    with pytest.raises(ValueError, match="num_envs \\* num_steps = 15 must split"):
        PPOTrainer(
            CategoricalPolicy(env.observation_dim, 3),
            env,
            PPOConfig(num_steps=5, num_minibatches=4),
            device="cpu",
        )
    trainer = PPOTrainer(
        CategoricalPolicy(env.observation_dim, 3, value_head=False),
        env,
        PPOConfig(num_steps=4, num_minibatches=2),
        device="cpu",
    )
    with pytest.raises(ValueError, match="must return a value"):
        trainer.collect()


def test_ppo_rollout_records_finished_episodes(chain_walk):
    torch.manual_seed(0)
    env = chain_walk(4, max_steps=5)
    trainer = PPOTrainer(
        CategoricalPolicy(env.observation_dim, 3), env, PPOConfig(num_steps=10), device="cpu"
    )
    batch = trainer.collect()
    assert batch.observations.shape == (10, 4, env.observation_dim)
    assert batch.values.shape == batch.returns.shape == batch.advantages.shape == (10, 4)
    # every episode is cut after 5 steps: two per environment in 10 steps
    assert batch.dones.sum().item() == len(batch.episode_returns) == 8
    torch.testing.assert_close(
        torch.tensor(sorted(batch.episode_returns)),
        torch.tensor(sorted(batch.rewards.T.reshape(8, 5).sum(-1).tolist())),
    )


def test_dvpo_rollout_keeps_quantiles(chain_walk):
    env = chain_walk(4)
    critic = QuantileCritic(env.observation_dim, num_heads=3, num_quantiles=5)
    trainer = DVPOTrainer(
        CategoricalPolicy(env.observation_dim, 3, value_head=False),
        critic,
        env,
        DVPOConfig(num_steps=6, num_minibatches=2),
        device="cpu",
    )
    batch = trainer.collect()
    assert batch.values.shape == batch.returns.shape == (6, 4, 5)
    assert batch.advantages.shape == (6, 4)
    assert torch.all(batch.returns[..., 1:] >= batch.returns[..., :-1])  # targets stay sorted
    metrics = trainer.update(batch)
    assert {"losses/value_loss", "losses/quantile_huber", "losses/tail_curvature"} <= set(metrics)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_trainers_run_on_cuda(chain_walk):
    grpo = GRPOTrainer(
        SubsetPolicy(3, 4), _random_rewards, GRPOConfig(num_generations=4, beta=0.1), device="cuda"
    )
    assert "losses/kl" in grpo.step(torch.randn(5, 3))
    assert all(p.is_cuda for p in grpo.policy.parameters())
    env = chain_walk(4)
    dvpo = DVPOTrainer(
        CategoricalPolicy(env.observation_dim, 3, value_head=False),
        QuantileCritic(env.observation_dim),
        env,
        DVPOConfig(num_steps=8, num_minibatches=2),
        device="cuda",
    )
    batch = dvpo.collect()
    assert batch.returns.is_cuda
    dvpo.update(batch)
