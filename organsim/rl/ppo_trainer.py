"""PPOTrainer (PPO-clip with GAE, CleanRL's loop) and DVPOTrainer (the same with a quantile critic).

Both collect fixed-length rollouts from a vectorised episodic environment (:class:`VectorEnv`),
compute advantages, and run ``update_epochs`` passes of minibatch updates. Rollout and loss meet
at :class:`RolloutBatch`.
"""

import math
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn

from organsim.rl.advantages import distributional_gae, gae
from organsim.rl.devices import resolve_device
from organsim.rl.dvpo import QuantileCritic, dvpo_critic_loss
from organsim.rl.ppo import ppo_policy_loss, ppo_value_loss


class VectorEnv(Protocol):
    """A batch of ``num_envs`` episodic environments stepped together, torch in and out.

    ``step`` resets finished environments itself: where ``done`` is true the returned observation
    is the first one of the next episode. Truncated episodes count as done (put the time left in
    the observation to keep it Markov).
    """

    num_envs: int
    observation_dim: int
    num_actions: int

    def reset(self) -> Tensor:
        """Start all episodes; observations of shape (num_envs, observation_dim)."""
        ...

    def step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Apply actions (num_envs,) -> next observations, rewards (num_envs,), done (num_envs,)."""
        ...


@dataclass
class PPOConfig:
    """Configuration of :class:`PPOTrainer` (names as in CleanRL's ppo.py).

    Attributes
    ----------
    num_steps : int
        Rollout length per environment per update.
    learning_rate : float
        Adam learning rate.
    gamma : float
        Discount in [0, 1].
    gae_lambda : float
        GAE lambda in [0, 1].
    num_minibatches : int
        Minibatches per epoch; must divide ``num_envs * num_steps`` into minibatches of >= 2.
    update_epochs : int
        Passes over each rollout.
    norm_adv : bool
        Normalise advantages per minibatch to zero mean and unit std.
    clip_coef : float
        Ratio clipping range (and value clipping range with ``clip_vloss``), > 0.
    clip_vloss : bool
        Clip the value loss as in PPO2.
    ent_coef : float
        Entropy bonus coefficient, >= 0.
    vf_coef : float
        Value loss coefficient, >= 0.
    max_grad_norm : float or None
        Gradient-norm clipping; None disables it.
    target_kl : float or None
        Stop the epochs of an update early once the approximate KL exceeds this.
    """

    num_steps: int = 32
    learning_rate: float = 2.5e-3
    gamma: float = 0.99
    gae_lambda: float = 0.95
    num_minibatches: int = 4
    update_epochs: int = 4
    norm_adv: bool = True
    clip_coef: float = 0.2
    clip_vloss: bool = True
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float | None = 0.5
    target_kl: float | None = None

    def __post_init__(self) -> None:
        name = type(self).__name__
        for field_name in ("num_steps", "num_minibatches", "update_epochs"):
            if getattr(self, field_name) < 1:
                raise ValueError(f"{name}.{field_name}={getattr(self, field_name)} must be >= 1")
        if self.learning_rate <= 0.0:
            raise ValueError(f"{name}.learning_rate={self.learning_rate} must be > 0")
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 <= self.gae_lambda <= 1.0:
            raise ValueError(
                f"{name}: gamma={self.gamma} and gae_lambda={self.gae_lambda} must be in [0, 1]"
            )
        if self.clip_coef <= 0.0:
            raise ValueError(f"{name}.clip_coef={self.clip_coef} must be > 0")
        if self.ent_coef < 0.0 or self.vf_coef < 0.0:
            raise ValueError(
                f"{name}: ent_coef={self.ent_coef} and vf_coef={self.vf_coef} must be >= 0"
            )
        if self.max_grad_norm is not None and self.max_grad_norm <= 0.0:
            raise ValueError(f"{name}.max_grad_norm={self.max_grad_norm} must be > 0 or None")
        if self.target_kl is not None and self.target_kl <= 0.0:
            raise ValueError(f"{name}.target_kl={self.target_kl} must be > 0 or None")


@dataclass
class DVPOConfig(PPOConfig):
    """Configuration of :class:`DVPOTrainer`: PPO's fields plus the quantile critic's loss.

    See :mod:`organsim.rl.dvpo` for the formula of each term.

    Attributes
    ----------
    clip_vloss : bool
        Must stay False: value clipping is not defined for the quantile loss.
    kappa : float
        Huber threshold of the quantile loss, > 0.
    tail_fraction : float
        Share of quantiles in each tail, in (0, 0.5].
    lower_tail_coef : float
        Weight of the lower-tail CVaR contraction, >= 0.
    upper_tail_coef : float
        Weight of the upper-tail gain, >= 0.
    mean_shift_coef : float
        Weight of the mean-shift penalty, >= 0.
    shape_coef : float
        Weight of the quantile-crossing (tail shape) penalty, >= 0.
    curvature_coef : float
        Weight of the second-difference (curvature) penalty, >= 0.
    head_consistency_coef : float
        Weight of the head-consistency penalty, >= 0.
    """

    clip_vloss: bool = False
    kappa: float = 1.0
    tail_fraction: float = 0.25
    lower_tail_coef: float = 0.1
    upper_tail_coef: float = 0.1
    mean_shift_coef: float = 0.1
    shape_coef: float = 0.1
    curvature_coef: float = 0.01
    head_consistency_coef: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.clip_vloss:
            raise ValueError(
                "DVPOConfig.clip_vloss must be False: the quantile critic loss is not clipped"
            )
        if self.kappa <= 0.0:
            raise ValueError(f"DVPOConfig.kappa={self.kappa} must be > 0")
        if not 0.0 < self.tail_fraction <= 0.5:
            raise ValueError(f"DVPOConfig.tail_fraction={self.tail_fraction} must be in (0, 0.5]")
        for field_name in self.critic_loss_kwargs():
            if field_name.endswith("_coef") and getattr(self, field_name) < 0.0:
                raise ValueError(
                    f"DVPOConfig.{field_name}={getattr(self, field_name)} must be >= 0"
                )

    def critic_loss_kwargs(self) -> dict[str, float]:
        """Keyword arguments of :func:`organsim.rl.dvpo.dvpo_critic_loss` from this config."""
        names = (
            "kappa",
            "tail_fraction",
            "lower_tail_coef",
            "upper_tail_coef",
            "mean_shift_coef",
            "shape_coef",
            "curvature_coef",
            "head_consistency_coef",
        )
        return {name: getattr(self, name) for name in names}


@dataclass
class RolloutBatch:
    """A rollout of T steps from N environments, with its advantages.

    Attributes
    ----------
    observations : Tensor, shape (T, N, observation_dim)
    actions : Tensor, shape (T, N)
    logprobs : Tensor, shape (T, N)
        Log-probabilities of the actions under the collecting policy.
    rewards : Tensor, shape (T, N)
    dones : Tensor, shape (T, N)
        1 where the episode ended on that transition.
    values : Tensor, shape (T, N) or (T, N, M)
        Critic output recorded during the rollout: scalars (PPO) or head-mean quantiles (DVPO).
    advantages : Tensor, shape (T, N)
    returns : Tensor, same shape as ``values``
        Critic targets (TD(lambda) returns, per quantile for DVPO).
    episode_returns : list of float
        Undiscounted returns of the episodes that ended during this rollout.
    """

    observations: Tensor
    actions: Tensor
    logprobs: Tensor
    rewards: Tensor
    dones: Tensor
    values: Tensor
    advantages: Tensor
    returns: Tensor
    episode_returns: list[float]


class PPOTrainer:
    """PPO-clip with GAE on a :class:`VectorEnv`.

    Parameters
    ----------
    policy : nn.Module
        ``get_action_and_value(observations, action=None) -> (action, logprob, entropy, value)``
        with a scalar value, e.g. :class:`CategoricalPolicy` with ``value_head=True``.
    env : VectorEnv
        Receives actions on the trainer's device.
    config : PPOConfig
    device : str or torch.device
        "auto" picks CUDA when available.
    """

    def __init__(
        self,
        policy: nn.Module,
        env: VectorEnv,
        config: PPOConfig,
        *,
        device: str | torch.device = "auto",
    ) -> None:
        batch_size = env.num_envs * config.num_steps
        if batch_size % config.num_minibatches or batch_size // config.num_minibatches < 2:
            raise ValueError(
                f"{type(self).__name__}: num_envs * num_steps = {batch_size} must split into "
                f"num_minibatches={config.num_minibatches} equal minibatches of at least 2"
            )
        self.config = config
        self.env = env
        self.device = resolve_device(device)
        self.policy = policy.to(self.device)
        self.optimizer = torch.optim.Adam(self._parameters(), lr=config.learning_rate, eps=1e-5)
        self.next_observation = env.reset().to(self.device)
        self._running_return = torch.zeros(env.num_envs, device=self.device)

    def _parameters(self) -> list[nn.Parameter]:
        return list(self.policy.parameters())

    def _evaluate(
        self, observations: Tensor, actions: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(action, logprob, entropy, critic output) for a batch of observations."""
        action, logprob, entropy, value = self.policy.get_action_and_value(observations, actions)
        if value is None:
            raise ValueError(
                "PPOTrainer: the policy must return a value (build it with a value head)"
            )
        return action, logprob, entropy, value

    def _rollout_value(self, critic_output: Tensor) -> Tensor:
        """What the rollout records of the critic output (the input to the advantage estimator)."""
        return critic_output

    def _advantages(
        self, rewards: Tensor, values: Tensor, dones: Tensor, next_value: Tensor
    ) -> tuple[Tensor, Tensor]:
        return gae(
            rewards,
            values,
            dones,
            next_value,
            gamma=self.config.gamma,
            gae_lambda=self.config.gae_lambda,
        )

    def _value_loss(
        self, critic_output: Tensor, old_values: Tensor, returns: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        clip = self.config.clip_coef if self.config.clip_vloss else None
        loss = ppo_value_loss(critic_output, old_values, returns, clip_coef=clip)
        return loss, {"losses/value_loss": loss.detach()}

    def collect(self) -> RolloutBatch:
        """Run ``num_steps`` steps in every environment and compute advantages.

        Returns
        -------
        RolloutBatch
        """
        observations, actions, logprobs, rewards, dones, values = [], [], [], [], [], []
        episode_returns: list[float] = []
        with torch.no_grad():
            for _ in range(self.config.num_steps):
                observation = self.next_observation
                action, logprob, _, critic_output = self._evaluate(observation)
                next_observation, reward, done = self.env.step(action)
                reward = reward.to(self.device, torch.float32)
                done = done.to(self.device, torch.float32)
                self._running_return += reward
                episode_returns.extend(self._running_return[done > 0].tolist())
                self._running_return *= 1.0 - done
                observations.append(observation)
                actions.append(action)
                logprobs.append(logprob)
                rewards.append(reward)
                dones.append(done)
                values.append(self._rollout_value(critic_output))
                self.next_observation = next_observation.to(self.device)
            next_value = self._rollout_value(self._evaluate(self.next_observation)[3])
            stacked_values = torch.stack(values)
            rewards_t, dones_t = torch.stack(rewards), torch.stack(dones)
            advantages, returns = self._advantages(rewards_t, stacked_values, dones_t, next_value)
        return RolloutBatch(
            observations=torch.stack(observations),
            actions=torch.stack(actions),
            logprobs=torch.stack(logprobs),
            rewards=rewards_t,
            dones=dones_t,
            values=stacked_values,
            advantages=advantages,
            returns=returns,
            episode_returns=episode_returns,
        )

    def update(self, batch: RolloutBatch) -> dict[str, float]:
        """``update_epochs`` passes of minibatch PPO updates on ``batch``.

        Returns
        -------
        dict of float
            Metrics of the last minibatch (``losses/...``, ``clip/fraction``).
        """
        config = self.config
        num_samples = batch.advantages.numel()
        flat_observations = batch.observations.reshape(num_samples, -1)
        flat_actions = batch.actions.reshape(num_samples, *batch.actions.shape[2:])
        flat_logprobs = batch.logprobs.reshape(num_samples)
        flat_advantages = batch.advantages.reshape(num_samples)
        flat_values = batch.values.reshape(num_samples, *batch.values.shape[2:])
        flat_returns = batch.returns.reshape(num_samples, *batch.returns.shape[2:])
        minibatch_size = num_samples // config.num_minibatches
        for _ in range(config.update_epochs):
            order = torch.randperm(num_samples, device=self.device)
            for start in range(0, num_samples, minibatch_size):
                index = order[start : start + minibatch_size]
                _, logprob, entropy, critic_output = self._evaluate(
                    flat_observations[index], flat_actions[index]
                )
                advantages = flat_advantages[index]
                if config.norm_adv:
                    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
                policy_loss, metrics = ppo_policy_loss(
                    logprob, flat_logprobs[index], advantages, clip_coef=config.clip_coef
                )
                value_loss, value_metrics = self._value_loss(
                    critic_output, flat_values[index], flat_returns[index]
                )
                entropy_bonus = entropy.mean()
                loss = policy_loss - config.ent_coef * entropy_bonus + config.vf_coef * value_loss
                self.optimizer.zero_grad()
                loss.backward()
                if config.max_grad_norm is not None:
                    nn.utils.clip_grad_norm_(self._parameters(), config.max_grad_norm)
                self.optimizer.step()
            if config.target_kl is not None and metrics["losses/approx_kl"] > config.target_kl:
                break
        metrics.update(value_metrics)
        metrics["losses/entropy"] = entropy_bonus.detach()
        metrics["losses/loss"] = loss.detach()
        return {name: float(value) for name, value in metrics.items()}

    def train(self, num_updates: int) -> list[dict[str, float]]:
        """Alternate :meth:`collect` and :meth:`update` ``num_updates`` times.

        Returns
        -------
        list of dict of float
            Per update: the update's metrics and ``charts/episodic_return`` (mean return of the
            episodes that ended during its rollout; NaN if none did).
        """
        history = []
        for _ in range(num_updates):
            batch = self.collect()
            metrics = self.update(batch)
            metrics["charts/episodic_return"] = (
                sum(batch.episode_returns) / len(batch.episode_returns)
                if batch.episode_returns
                else math.nan
            )
            history.append(metrics)
        return history


class DVPOTrainer(PPOTrainer):
    """PPO with a DVPO quantile critic: distributional GAE, quantile loss and tail terms.

    Parameters
    ----------
    policy : nn.Module
        Actor with ``get_action_and_value``; its value output, if any, is ignored (build
        :class:`CategoricalPolicy` with ``value_head=False``).
    critic : QuantileCritic
        Quantile critic on the same observations.
    env : VectorEnv
    config : DVPOConfig
    device : str or torch.device
    """

    def __init__(
        self,
        policy: nn.Module,
        critic: QuantileCritic,
        env: VectorEnv,
        config: DVPOConfig,
        *,
        device: str | torch.device = "auto",
    ) -> None:
        self.critic = critic.to(resolve_device(device))
        super().__init__(policy, env, config, device=device)

    def _parameters(self) -> list[nn.Parameter]:
        return list(self.policy.parameters()) + list(self.critic.parameters())

    def _evaluate(
        self, observations: Tensor, actions: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        action, logprob, entropy, _ = self.policy.get_action_and_value(observations, actions)
        return action, logprob, entropy, self.critic(observations)  # quantiles (B, H, M)

    def _rollout_value(self, critic_output: Tensor) -> Tensor:
        return critic_output.mean(dim=1)  # head-mean quantiles (B, M)

    def _advantages(
        self, rewards: Tensor, values: Tensor, dones: Tensor, next_value: Tensor
    ) -> tuple[Tensor, Tensor]:
        return distributional_gae(
            rewards,
            values,
            dones,
            next_value,
            gamma=self.config.gamma,
            gae_lambda=self.config.gae_lambda,
        )

    def _value_loss(
        self, critic_output: Tensor, old_values: Tensor, returns: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        loss, metrics = dvpo_critic_loss(critic_output, returns, **self.config.critic_loss_kwargs())
        metrics["losses/value_loss"] = loss.detach()
        return loss, metrics
