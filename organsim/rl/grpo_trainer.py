"""GRPOTrainer: group-relative policy optimisation of a policy over discrete sequences.

For each context the trainer samples a group of G completions (for :class:`SubsetPolicy`, G
subsets of candidates), scores them with a user reward function, turns the rewards into
group-relative advantages and takes ``num_iterations`` optimiser steps on one of the GRPO loss
variants, or on BAPO's adaptively clipped loss. Rollout and loss meet at :class:`GroupBatch`.
"""

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from organsim.rl.advantages import GROUP_SCALINGS, group_advantages, zero_variance_groups
from organsim.rl.bapo import BAPOConfig, bapo_loss
from organsim.rl.devices import resolve_device
from organsim.rl.grpo import IMPORTANCE_SAMPLING_LEVELS, LOSS_TYPES, grpo_loss
from organsim.rl.schedules import HorizonSchedule

RewardFn = Callable[..., Tensor]


@dataclass
class GRPOConfig:
    """Configuration of :class:`GRPOTrainer`.

    Attributes
    ----------
    num_generations : int
        Group size G: completions (subsets) sampled per context. At least 2.
    learning_rate : float
        Adam learning rate.
    loss_type : str
        "grpo" (mean over each sequence's tokens, then over sequences), "dr_grpo" (sum over all
        tokens divided by the constant ``num_sequences * max_completion_length``), "dapo" (sum
        over tokens divided by the number of tokens in the whole generation batch) or "bnpo"
        (divided by the number of tokens in the current minibatch). This trainer updates on the
        whole generation batch at once, so "dapo" and "bnpo" coincide here; "dapo" differs by
        its clip-higher default (see ``epsilon_high``).
    scale_rewards : str
        Scaling of group-centred rewards: "group" std, "batch" std or "none" (Dr.GRPO).
    epsilon : float
        Lower clipping: the ratio is clipped below at ``1 - epsilon``. In (0, 1).
    epsilon_high : float or None
        Upper clipping at ``1 + epsilon_high``. None means ``max(0.28, epsilon)`` for
        ``loss_type="dapo"`` (the DAPO paper's clip-higher value) and ``epsilon`` otherwise
        (see :attr:`upper_epsilon`). Must be >= ``epsilon``.
    beta : float
        Coefficient of the k3 KL to the reference policy (a frozen copy of the initial policy).
        0 skips the reference entirely.
    importance_sampling_level : str
        "token": one ratio per decision; "sequence": the exp of the mean log-ratio over the
        sequence, shared by all its decisions (GSPO).
    num_iterations : int
        Optimiser steps on each generation batch (TRL's mu). With 1 the update is on-policy and
        the ratio is exactly 1, so clipping never acts.
    max_completion_length : int or None
        Constant normaliser of "dr_grpo"; None means the sequence length of the batch.
    drop_zero_variance_groups : bool
        Remove groups whose completions all got the same reward before the loss (DAPO's dynamic
        sampling without the resampling); they carry no advantage signal anyway.
    max_grad_norm : float or None
        Gradient-norm clipping; None disables it.
    adaptive_clipping : BAPOConfig or None
        When set, BAPO chooses the clipping bounds at every optimiser step instead of
        ``epsilon`` / ``epsilon_high`` (leave ``epsilon_high`` None then).
    """

    num_generations: int = 8
    learning_rate: float = 1e-2
    loss_type: str = "grpo"
    scale_rewards: str = "group"
    epsilon: float = 0.2
    epsilon_high: float | None = None
    beta: float = 0.0
    importance_sampling_level: str = "token"
    num_iterations: int = 1
    max_completion_length: int | None = None
    drop_zero_variance_groups: bool = False
    max_grad_norm: float | None = 1.0
    adaptive_clipping: BAPOConfig | None = None

    def __post_init__(self) -> None:
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(
                f"GRPOConfig.loss_type={self.loss_type!r}; expected one of {LOSS_TYPES}"
            )
        if self.scale_rewards not in GROUP_SCALINGS:
            raise ValueError(
                f"GRPOConfig.scale_rewards={self.scale_rewards!r}; expected one of {GROUP_SCALINGS}"
            )
        if self.importance_sampling_level not in IMPORTANCE_SAMPLING_LEVELS:
            raise ValueError(
                f"GRPOConfig.importance_sampling_level={self.importance_sampling_level!r}; "
                f"expected one of {IMPORTANCE_SAMPLING_LEVELS}"
            )
        if self.num_generations < 2:
            raise ValueError(
                f"GRPOConfig.num_generations={self.num_generations}: group-relative advantages "
                "need at least 2 completions per context"
            )
        if not 0.0 < self.epsilon < 1.0:
            raise ValueError(f"GRPOConfig.epsilon={self.epsilon} must be in (0, 1)")
        if self.adaptive_clipping is not None and self.epsilon_high is not None:
            raise ValueError(
                "GRPOConfig: adaptive_clipping (BAPO) chooses the clipping bounds itself; "
                f"leave epsilon_high=None (got {self.epsilon_high})"
            )
        if self.epsilon_high is not None and self.epsilon_high < self.epsilon:
            raise ValueError(
                f"GRPOConfig.epsilon_high={self.epsilon_high} must be >= epsilon={self.epsilon}"
            )
        if self.beta < 0.0:
            raise ValueError(f"GRPOConfig.beta={self.beta} must be >= 0 (0 skips the reference)")
        if self.num_iterations < 1:
            raise ValueError(f"GRPOConfig.num_iterations={self.num_iterations} must be >= 1")
        if self.learning_rate <= 0.0:
            raise ValueError(f"GRPOConfig.learning_rate={self.learning_rate} must be > 0")
        if self.max_completion_length is not None and self.max_completion_length < 1:
            raise ValueError(
                f"GRPOConfig.max_completion_length={self.max_completion_length} must be >= 1 or None"
            )
        if self.max_completion_length is not None and self.loss_type != "dr_grpo":
            raise ValueError(
                "GRPOConfig.max_completion_length is the normaliser of loss_type='dr_grpo' only; "
                f"it has no effect with loss_type={self.loss_type!r}"
            )
        if self.max_grad_norm is not None and self.max_grad_norm <= 0.0:
            raise ValueError(f"GRPOConfig.max_grad_norm={self.max_grad_norm} must be > 0 or None")

    @property
    def upper_epsilon(self) -> float:
        """The upper clipping epsilon in use: ``epsilon_high``, or its default when None."""
        if self.epsilon_high is not None:
            return self.epsilon_high
        return max(0.28, self.epsilon) if self.loss_type == "dapo" else self.epsilon


@dataclass
class GroupBatch:
    """One generation batch: what the rollout produces and the loss consumes.

    Rows are completions; the G completions of a context are consecutive rows. Groups dropped for
    zero variance are already removed from the row-wise fields.

    Attributes
    ----------
    contexts : Tensor, shape (R, context_dim)
        The context of each completion (each context repeated G times).
    actions : Tensor, shape (R, L)
        The sampled completions (for subsets, L = K inclusion indicators).
    old_logprobs : Tensor, shape (R, L)
        Per-token log-probabilities under the sampling policy.
    ref_logprobs : Tensor, shape (R, L), or None
        Per-token log-probabilities under the reference policy; None when ``beta == 0``.
    mask : Tensor, shape (R, L)
        1 for tokens that count in the loss.
    advantages : Tensor, shape (R,)
        Group-relative advantage of each completion.
    rewards : Tensor, shape (num_contexts, G)
        Raw rewards of all groups, dropped ones included (for logging).
    """

    contexts: Tensor
    actions: Tensor
    old_logprobs: Tensor
    ref_logprobs: Tensor | None
    mask: Tensor
    advantages: Tensor
    rewards: Tensor


class GRPOTrainer:
    """Trains a sequence policy with GRPO, Dr.GRPO, DAPO, BNPO or BAPO.

    Parameters
    ----------
    policy : nn.Module
        Has ``get_action_and_value(contexts, action=None) -> (action, logprob, entropy, value)``
        with per-token ``action`` and ``logprob`` of shape (B, L), e.g. :class:`SubsetPolicy`.
    reward_fn : callable
        ``reward_fn(contexts, completions) -> rewards`` with contexts (B, context_dim),
        completions (B, G, L) and rewards (B, G); called with an extra ``horizon=`` keyword when
        a ``horizon_schedule`` is given. Rewards may be on any device.
    config : GRPOConfig
    device : str or torch.device
        "auto" picks CUDA when available.
    horizon_schedule : HorizonSchedule, optional
        Rollout horizon passed to ``reward_fn`` at each step (ScalingInter-style curriculum).

    Attributes
    ----------
    global_step : int
        Number of :meth:`step` calls so far.
    """

    def __init__(
        self,
        policy: nn.Module,
        reward_fn: RewardFn,
        config: GRPOConfig,
        *,
        device: str | torch.device = "auto",
        horizon_schedule: HorizonSchedule | None = None,
    ) -> None:
        self.config = config
        self.device = resolve_device(device)
        self.policy = policy.to(self.device)
        self.reward_fn = reward_fn
        self.horizon_schedule = horizon_schedule
        self.ref_policy = (
            copy.deepcopy(self.policy).eval().requires_grad_(False) if config.beta > 0.0 else None
        )
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=config.learning_rate)
        self.global_step = 0

    def generate(self, contexts: Tensor) -> GroupBatch:
        """Sample G completions per context, score them and compute advantages.

        Parameters
        ----------
        contexts : Tensor, shape (B, context_dim)

        Returns
        -------
        GroupBatch
        """
        config = self.config
        contexts = contexts.to(self.device)
        num_contexts, group_size = contexts.shape[0], config.num_generations
        repeated = contexts.repeat_interleave(group_size, dim=0)  # (B * G, context_dim)
        with torch.no_grad():
            actions, old_logprobs, _, _ = self.policy.get_action_and_value(repeated)
            ref_logprobs = (
                self.ref_policy.get_action_and_value(repeated, actions)[1]
                if self.ref_policy is not None
                else None
            )
        completions = actions.view(num_contexts, group_size, *actions.shape[1:])  # (B, G, L)
        if self.horizon_schedule is None:
            rewards = self.reward_fn(contexts, completions)
        else:
            rewards = self.reward_fn(
                contexts, completions, horizon=self.horizon_schedule(self.global_step)
            )
        rewards = torch.as_tensor(rewards, dtype=old_logprobs.dtype).to(self.device)
        if rewards.shape != (num_contexts, group_size):
            raise ValueError(
                f"GRPOTrainer: reward_fn returned shape {tuple(rewards.shape)}, expected "
                f"(num_contexts, num_generations) = ({num_contexts}, {group_size})"
            )
        advantages = group_advantages(rewards, scale=config.scale_rewards).reshape(-1)
        keep = torch.ones(num_contexts * group_size, dtype=torch.bool, device=self.device)
        if config.drop_zero_variance_groups:
            keep = (~zero_variance_groups(rewards)).repeat_interleave(group_size)
        return GroupBatch(
            contexts=repeated[keep],
            actions=actions[keep],
            old_logprobs=old_logprobs[keep],
            ref_logprobs=ref_logprobs[keep] if ref_logprobs is not None else None,
            mask=torch.ones_like(old_logprobs[keep]),
            advantages=advantages[keep],
            rewards=rewards,
        )

    def loss(self, batch: GroupBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """The configured loss of the current policy on ``batch``.

        Returns
        -------
        loss : Tensor, scalar
        metrics : dict of detached scalar tensors
        """
        config = self.config
        _, logprobs, entropy, _ = self.policy.get_action_and_value(batch.contexts, batch.actions)
        common = {
            "loss_type": config.loss_type,
            "beta": config.beta,
            "ref_logprobs": batch.ref_logprobs,
            "importance_sampling_level": config.importance_sampling_level,
            "max_completion_length": config.max_completion_length,
            "num_items_in_batch": batch.mask.sum(),
        }
        if config.adaptive_clipping is not None:
            loss, metrics = bapo_loss(
                logprobs,
                batch.old_logprobs,
                batch.advantages,
                batch.mask,
                config=config.adaptive_clipping,
                **common,
            )
        else:
            loss, metrics = grpo_loss(
                logprobs,
                batch.old_logprobs,
                batch.advantages,
                batch.mask,
                epsilon=config.epsilon,
                epsilon_high=config.upper_epsilon,
                **common,
            )
        metrics["losses/entropy"] = (entropy * batch.mask).sum().detach() / batch.mask.sum()
        return loss, metrics

    def step(self, contexts: Tensor) -> dict[str, float]:
        """One GRPO step: generate on ``contexts``, then ``num_iterations`` optimiser steps.

        Parameters
        ----------
        contexts : Tensor, shape (B, context_dim)

        Returns
        -------
        dict of float
            Metrics of the last optimiser step (``losses/...``, ``clip/...``) and
            ``reward/mean``, ``reward/std``, ``reward/zero_variance_fraction`` and, with a
            schedule, ``schedule/horizon``. Without any group left after dropping, only the
            reward metrics (no optimiser step is taken).
        """
        batch = self.generate(contexts)
        metrics: dict[str, Tensor | float] = {
            "reward/mean": batch.rewards.mean(),
            "reward/std": batch.rewards.std(),
            "reward/zero_variance_fraction": zero_variance_groups(batch.rewards).float().mean(),
        }
        if self.horizon_schedule is not None:
            metrics["schedule/horizon"] = float(self.horizon_schedule(self.global_step))
        if batch.actions.shape[0] > 0:
            for _ in range(self.config.num_iterations):
                loss, loss_metrics = self.loss(batch)
                self.optimizer.zero_grad()
                loss.backward()
                if self.config.max_grad_norm is not None:
                    nn.utils.clip_grad_norm_(self.policy.parameters(), self.config.max_grad_norm)
                self.optimizer.step()
            metrics.update(loss_metrics)
        self.global_step += 1
        return {name: float(value) for name, value in metrics.items()}
