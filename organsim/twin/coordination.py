"""Training the reference-selection policy with the RL core (``organsim coordinate``).

Each training step draws forecast problems (a stay up to hour ``t``) from the cohort's *train*
split and rolls the twin out ``group_size`` times per problem for the horizon of the current stage
(:class:`organsim.rl.HorizonSchedule`, 1 -> 6 -> 24 hours by default). At every simulated hour the
policy samples, for each agent, which of the other eight systems it consults (its decisions are
the "tokens"); the rollouts feed back predictive means and pass the error corrector, as the
coordinated twin forecasts. The reward of an agent's decisions is the accuracy of its own
system against the real next hours: ``-nMSE`` (z-scored squared error over the observed targets,
averaged over the system's variables and the hours of the horizon), plus, with
``realism_weight > 0``, that weight times the POLAR realism critic's score of the simulated stretch
(:mod:`organsim.twin.realism`; from the 6-hour stage on).

- ``grpo`` / ``dapo`` / ``bapo``: advantages are group-relative over the ``group_size`` rollouts
  of a problem (:func:`organsim.rl.group_advantages`), per agent. In a multi-hour rollout the
  decisions of every hour share that outcome advantage, and an AgentPRM process reward model
  (:func:`organsim.rl.agentprm_loss`, trained alongside on the same rollouts) moves credit between
  the hours: each hour's *progress* ``M(s_k, a_k) - M(s_{k-1}, a_{k-1})`` minus its mean over the
  rollout's hours (so it sums to zero over a rollout and never changes whether a rollout as a
  whole is reinforced), in units of the group's reward spread, weighted by ``prm_weight``. The loss is :func:`organsim.rl.grpo_loss` (``loss_type`` "grpo", or
  "dapo" with its clip-higher bound) or :func:`organsim.rl.bapo_loss` (adaptive clipping).
- ``ppo``: per-hour rewards ``-nMSE`` of each hour, GAE over the hours with the policy's value
  head (:func:`organsim.rl.gae`), :func:`organsim.rl.ppo_policy_loss` and
  :func:`organsim.rl.ppo_value_loss`.

Every ``validate_every`` steps the policy (its most likely sets) is scored on problems from the
*validation* split at the largest horizon; the best policy is kept. The test split is never read.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from organsim.data.cohort import Cohort
from organsim.data.windows import HourlyArrays
from organsim.rl import (
    AgentPRMConfig,
    BAPOConfig,
    GRPOConfig,
    HorizonSchedule,
    PPOConfig,
    agentprm_loss,
    bapo_loss,
    gae,
    group_advantages,
    grpo_loss,
    ppo_policy_loss,
    ppo_value_loss,
)
from organsim.twin.policy import (
    POLICY_CONFIG_FILE,
    POLICY_WEIGHTS_FILE,
    ReferencePolicy,
    ReferencePolicyConfig,
)
from organsim.twin.realism import (
    CRITIC_CONFIG_FILE,
    CRITIC_WEIGHTS_FILE,
    REALISM_HOURS,
    RealismCritic,
    RealismCriticConfig,
)
from organsim.twin.saved_module import write_beside_model
from organsim.twin.summary import summary_size
from organsim.twin.twin import PatientTwin
from organsim.utils.io import atomic_write_text
from organsim.utils.progress import progress_bar
from organsim.utils.seeding import seed_everything

ALGORITHMS = ("grpo", "bapo", "dapo", "ppo")


@dataclass
class CoordinationConfig:
    """Settings of :func:`train_reference_policy`.

    Attributes
    ----------
    algo
        ``"grpo"``, ``"bapo"``, ``"dapo"`` or ``"ppo"`` (see the module docstring).
    steps
        Training steps (one batch of rollouts and one update each).
    problems_per_step
        Forecast problems per step.
    group_size
        Rollouts per problem (G of the group-relative advantages; >= 2).
    horizons
        Horizon of each stage of the curriculum (hours), non-decreasing; stages share the steps equally.
    learning_rate
        Adam learning rate of the policy (and of the process reward model).
    update_iterations
        Optimiser passes over each step's rollouts (GRPO's mu; PPO's update epochs).
    prm_weight
        Weight of the AgentPRM per-hour credit in the token advantages (GRPO family). Off by
        default: on PhysioNet 2019, with reference effects far smaller than the reward noise, the
        process reward model's action dependence was mostly fitted noise and its credit drove the
        policy to consult nothing within 30 steps, although consulting more was better at 1 hour.
    realism_weight
        Weight of the realism critic's score in the reward; 0 trains no critic.
    realism_steps
        Optimiser steps of the realism critic (before the policy is trained).
    hidden_size
        Width of the policy's hidden layers.
    initial_consult_probability
        Probability with which the untrained policy consults each other system (its output bias;
        0.5 explores every subset evenly, values near 1 start from "all" and learn what to drop).
    min_context
        Fewest of the stay's own hours in a problem's context.
    validation_problems
        Validation problems scored for model selection.
    validate_every
        Steps between validations (the last step is always validated).
    correct
        Run the error corrector in the training and validation rollouts.
    seed
        Seed of initialisation, problems and sampled reference sets.
    """

    algo: str = "grpo"
    steps: int = 60
    problems_per_step: int = 16
    group_size: int = 4
    horizons: tuple[int, ...] = (1, 6, 24)
    learning_rate: float = 3e-3
    update_iterations: int = 2
    prm_weight: float = 0.0
    realism_weight: float = 0.0
    realism_steps: int = 40
    hidden_size: int = 64
    initial_consult_probability: float = 0.5
    min_context: int = 3
    validation_problems: int = 256
    validate_every: int = 10
    correct: bool = True
    seed: int = 0
    schedule: HorizonSchedule = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.algo not in ALGORITHMS:
            raise ValueError(f"algo must be one of {ALGORITHMS}, got {self.algo!r}")
        for name in ("steps", "problems_per_step", "update_iterations", "validation_problems", "validate_every", "min_context"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.group_size < 2:
            raise ValueError(f"group_size must be >= 2 (group-relative advantages), got {self.group_size}")
        if not 0 < self.initial_consult_probability < 1:
            raise ValueError(f"initial_consult_probability must be in (0, 1), got {self.initial_consult_probability}")
        if self.prm_weight < 0 or self.realism_weight < 0 or self.realism_steps < 0:
            raise ValueError("prm_weight, realism_weight and realism_steps must be >= 0")
        self.horizons = tuple(int(h) for h in self.horizons)
        self.schedule = HorizonSchedule(self.horizons, steps_per_stage=max(1, math.ceil(self.steps / len(self.horizons))))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the settings."""
        document = asdict(self)
        document.pop("schedule")
        document["horizons"] = list(self.horizons)
        return document


@dataclass
class CoordinationResult:
    """What :func:`train_reference_policy` did.

    Attributes
    ----------
    policy
        The trained policy (the best validated one).
    critic
        The realism critic, when ``realism_weight > 0``.
    history
        One dict of metrics per training step (``step``, ``horizon``, ``reward/mean``,
        ``consult_rate``, loss terms).
    validation
        ``{"step", "mean_nmse", "nmse_at": {h: ...}}`` per validation of the policy.
    baselines
        The same validation figures of the fixed settings ``"none"`` and ``"all"``.
    best_step
        Step of the kept policy.
    consult_rates
        ``(S, S)`` share of validation hours in which agent ``s`` consulted system ``r`` (kept policy).
    realism
        The critic's realism score of validation rollouts with ``"all"`` and with the policy, when trained.
    """

    policy: ReferencePolicy
    critic: RealismCritic | None
    history: list[dict[str, float]]
    validation: list[dict[str, Any]]
    baselines: dict[str, dict[str, Any]]
    best_step: int
    consult_rates: np.ndarray
    realism: dict[str, float] | None

    def summary(self) -> dict[str, Any]:
        """A JSON-ready record (no weights)."""
        best = next(v for v in self.validation if v["step"] == self.best_step)
        return {
            "best_step": self.best_step,
            "best_validation": best,
            "baselines": self.baselines,
            "validation": self.validation,
            "consult_rates": self.consult_rates.round(4).tolist(),
            "realism": self.realism,
            "history": self.history,
        }


def step_nmse(
    simulated: np.ndarray, truth: np.ndarray, twin: PatientTwin
) -> tuple[np.ndarray, np.ndarray]:
    """Per hour and system, z-scored squared error of ``n`` simulations against the truth.

    Parameters
    ----------
    simulated, truth
        ``(n, H, V_model)`` raw values (truth NaN = not observed).
    twin
        Gives the normaliser, variables and systems.

    Returns
    -------
    per_row, per_step
        ``(n, H, S)`` mean over each system's observed variables of each row and hour (NaN where
        none is observed), and ``(H,)`` the evaluation harness's figure at each hour: per variable
        the mean over observed targets, per system the mean over its variables with targets, then
        the mean over systems with targets.
    """
    config = twin.agents.config
    normaliser = twin.agents.normaliser
    error = (normaliser.zscore(simulated, config.variables).astype(np.float64) - normaliser.zscore(truth, config.variables)) ** 2
    observed = ~np.isnan(truth)
    error = np.where(observed, error, 0.0)
    membership = np.array([[s == system for s in config.variable_systems] for system in twin.systems], dtype=np.float64)  # (S, V)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_row = (error @ membership.T) / (observed.astype(np.float64) @ membership.T)  # (n, H, S)
        per_variable = error.sum(axis=0) / observed.sum(axis=0)  # (H, V)
    scored = ~np.isnan(per_variable)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_system = (np.where(scored, per_variable, 0.0) @ membership.T) / (scored.astype(np.float64) @ membership.T)  # (H, S)
    per_step = np.nanmean(np.where(np.isfinite(per_system), per_system, np.nan), axis=1)
    return per_row, per_step


class _Decisions:
    """A reference chooser that samples the policy's sets and records what the losses need."""

    def __init__(self, policy: ReferencePolicy, generator: torch.Generator, device: str) -> None:
        self.policy = policy
        self.device = device
        self.generator = generator
        self.contexts: list[torch.Tensor] = []  # per hour (n, S, D)
        self.actions: list[torch.Tensor] = []  # per hour (n, S, K)
        self.logprobs: list[torch.Tensor] = []  # per hour (n, S, K)
        self.values: list[torch.Tensor] = []  # per hour (n, S), PPO only

    def __call__(self, step: int, summary: np.ndarray) -> torch.Tensor:
        policy = self.policy
        contexts = policy.contexts(torch.from_numpy(summary).to(self.device))  # (n, S, D)
        with torch.no_grad():
            actions = torch.bernoulli(torch.sigmoid(policy.subsets.actor(contexts)), generator=self.generator)
            _, logprobs, _, values = policy.subsets.get_action_and_value(contexts, actions)
        self.contexts.append(contexts)
        self.actions.append(actions)
        self.logprobs.append(logprobs)
        if values is not None:
            self.values.append(values)
        return policy.to_matrix(actions)

    def stacked(self, items: list[torch.Tensor]) -> torch.Tensor:
        """Per-hour tensors stacked as ``(n, S, H, ...)``."""
        return torch.stack(items, dim=2)


def train_reference_policy(twin: PatientTwin, cohort: Cohort, config: CoordinationConfig, *, progress: bool = True) -> CoordinationResult:
    """Train the reference-selection policy of ``twin`` on ``cohort``'s train split (see the module docstring).

    ``twin.policy`` (and ``twin.realism_critic`` with a realism weight) are replaced by the trained
    ones. The cohort must be split (``organsim train`` splits it the same way).
    """
    train_part, validation_part = cohort.subset(split="train"), cohort.subset(split="validation")
    if train_part.stays.height == 0 or validation_part.stays.height == 0:
        raise ValueError("coordination trains on the train split and selects on the validation split: the cohort needs both")
    rng = seed_everything(config.seed)
    generator = torch.Generator(device=twin.device).manual_seed(config.seed)
    agents_config = twin.agents.config
    context_hours = agents_config.context_hours
    train_arrays = HourlyArrays.from_cohort(train_part)
    validation_arrays = HourlyArrays.from_cohort(validation_part)
    candidates = {h: train_arrays.starts(horizon=h, per_stay=None, min_context=config.min_context, seed=config.seed) for h in set(config.horizons)}
    empty = [h for h, starts in candidates.items() if starts.height == 0]
    if empty:
        raise ValueError(f"no train stay is long enough for a {max(empty)}-hour horizon after {config.min_context} context hours")
    longest = max(config.horizons)
    validation_starts = validation_arrays.starts(horizon=longest, per_stay=4, min_context=config.min_context, seed=config.seed)
    if validation_starts.height == 0:
        raise ValueError(f"no validation stay is long enough for a {longest}-hour horizon")
    pick = np.sort(rng.choice(validation_starts.height, size=min(config.validation_problems, validation_starts.height), replace=False))
    validation_starts = validation_starts[pick]
    validation_batch = validation_arrays.batch(validation_starts, context_hours=context_hours, horizon=longest)
    model_columns = twin.runtime.model_columns(validation_batch.variables)
    validation_truth = validation_arrays.targets(validation_starts, horizon=longest)[:, :, model_columns]

    policy = ReferencePolicy(ReferencePolicyConfig(systems=twin.systems, hidden_size=config.hidden_size, value_head=config.algo == "ppo"))
    with torch.no_grad():
        p = config.initial_consult_probability
        policy.subsets.actor[-1].bias.fill_(math.log(p / (1 - p)))
    policy = policy.to(twin.device)
    twin.policy = policy
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.learning_rate)
    n_systems = len(twin.systems)
    context_dim = summary_size(n_systems) + n_systems
    process_reward = nn.Sequential(nn.Linear(context_dim + n_systems - 1, config.hidden_size), nn.Tanh(), nn.Linear(config.hidden_size, 1)).to(twin.device)
    prm_optimizer = torch.optim.Adam(process_reward.parameters(), lr=config.learning_rate)

    def validate(references: str) -> tuple[dict[str, Any], np.ndarray]:
        rollout = twin.rollout(validation_batch, longest, references=references, mean=True, correct=config.correct, seed=config.seed)
        simulated = rollout.values[0][:, :, model_columns]
        _, per_step = step_nmse(simulated, validation_truth, twin)
        at = {str(h): float(per_step[h - 1]) for h in sorted(set(config.horizons))}
        return {"mean_nmse": float(np.mean(list(at.values()))), "nmse_at": at}, rollout.consulted.mean(axis=(0, 1, 2))

    baselines = {mode: validate(mode)[0] for mode in ("none", "all")}
    critic, realism = None, None
    if config.realism_weight > 0:
        critic = _train_realism_critic(twin, train_arrays, candidates, config, rng)
        twin.realism_critic = critic
    history: list[dict[str, float]] = []
    validation: list[dict[str, Any]] = []
    best = (math.inf, 0, copy.deepcopy(policy.state_dict()), np.zeros((n_systems, n_systems)))
    with progress_bar(disable=not progress) as bar:
        task = bar.add_task("coordinating", total=config.steps)
        for step in range(config.steps):
            horizon = config.schedule(step)
            metrics = _train_step(twin, policy, process_reward, optimizer, prm_optimizer, train_arrays, candidates[horizon], horizon, config, rng, generator)
            history.append({"step": step + 1, "horizon": horizon, **metrics})
            if (step + 1) % config.validate_every == 0 or step + 1 == config.steps:
                figures, rates = validate("policy")
                validation.append({"step": step + 1, **figures})
                if figures["mean_nmse"] < best[0]:
                    best = (figures["mean_nmse"], step + 1, copy.deepcopy(policy.state_dict()), rates)
            bar.update(task, advance=1, description=f"coordinating ({config.algo}, {horizon} h, reward {metrics['reward/mean']:.3f})")
    policy.load_state_dict(best[2])
    policy.eval()
    if critic is not None:
        realism = _validation_realism(twin, validation_arrays, validation_starts, context_hours, config)
    return CoordinationResult(
        policy=policy, critic=critic, history=history, validation=validation, baselines=baselines,
        best_step=best[1], consult_rates=best[3], realism=realism,
    )


def _problems(arrays: HourlyArrays, candidates: pl.DataFrame, n: int, rng: np.random.Generator) -> pl.DataFrame:
    """``n`` start rows drawn without replacement (all when fewer), in (stay, hour) order."""
    pick = np.sort(rng.choice(candidates.height, size=min(n, candidates.height), replace=False))
    return candidates[pick]


def _train_step(
    twin: PatientTwin,
    policy: ReferencePolicy,
    process_reward: nn.Module,
    optimizer: torch.optim.Optimizer,
    prm_optimizer: torch.optim.Optimizer,
    arrays: HourlyArrays,
    candidates: pl.DataFrame,
    horizon: int,
    config: CoordinationConfig,
    rng: np.random.Generator,
    generator: torch.Generator,
) -> dict[str, float]:
    """Roll out G times per problem with sampled reference sets, then update the policy once."""
    starts = _problems(arrays, candidates, config.problems_per_step, rng)
    batch = arrays.batch(starts, context_hours=twin.agents.config.context_hours, horizon=horizon)
    model_columns = twin.runtime.model_columns(batch.variables)
    group = config.group_size
    rows = np.repeat(np.arange(batch.size), group)  # problem-major: the G rollouts of a problem are consecutive
    truth = arrays.targets(starts, horizon=horizon)[rows][:, :, model_columns]  # (n, H, V)
    device = twin.device
    decisions = _Decisions(policy, generator, device)
    simulated = twin.simulate_rows(batch.select(rows), horizon, chooser=decisions, generator=generator, mean=True, correct=config.correct)
    errors, _ = step_nmse(simulated.values, truth, twin)  # (n, H, S)
    errors = torch.from_numpy(errors).float().permute(0, 2, 1).to(device)  # (n, S, H)
    observed = ~torch.isnan(errors)
    valid = observed.any(dim=2)  # (n, S): the agent's system has a target in the horizon
    outcome = -torch.nanmean(errors, dim=2)  # (n, S), NaN where not valid
    realism_reward = torch.zeros(len(rows), device=device)
    if config.realism_weight > 0 and horizon >= REALISM_HOURS:
        realism_truth = arrays.targets(starts, horizon=REALISM_HOURS)
        values = twin.runtime.to_batch_layout(simulated.values, batch.variables)
        # each rollout of a problem against the problem's real stretch (reference: the next problem's)
        per_rollout = values.reshape(batch.size, group, horizon, -1).transpose(1, 0, 2, 3)  # (G, B, H, V)
        inputs = twin.realism_inputs(batch, realism_truth, per_rollout)
        scores = twin.realism_critic.rewards(inputs[0], inputs[1], inputs[3])  # (G * B,) sample-major
        realism_reward = scores.reshape(group, batch.size).T.reshape(-1).float().to(device)
    contexts = decisions.stacked(decisions.contexts)  # (n, S, H, D)
    actions = decisions.stacked(decisions.actions)  # (n, S, H, K)
    old_logprobs = decisions.stacked(decisions.logprobs)  # (n, S, H, K)
    metrics: dict[str, float] = {
        "reward/mean": float(torch.nanmean(outcome)),
        "reward/realism": float(realism_reward.mean()),
        "consult_rate": float(actions.mean()),
    }
    if config.algo == "ppo":
        metrics.update(_ppo_update(policy, optimizer, contexts, actions, old_logprobs, decisions.stacked(decisions.values), errors, realism_reward, config))
        return metrics
    reward = torch.where(valid, outcome, 0.0) + config.realism_weight * realism_reward[:, None]  # (n, S)
    by_group = reward.reshape(-1, group, reward.shape[1]).permute(0, 2, 1)  # (B, S, G)
    group_valid = valid.reshape(-1, group, reward.shape[1]).permute(0, 2, 1)
    group_mean = (by_group * group_valid).sum(-1, keepdim=True) / group_valid.sum(-1, keepdim=True).clamp_min(1)
    filled = torch.where(group_valid, by_group, group_mean)  # an agent without targets gets the group mean: no advantage
    advantages = group_advantages(filled.reshape(-1, group), scale="group").reshape(by_group.shape)  # (B, S, G)
    advantages = advantages.permute(0, 2, 1).reshape(reward.shape)  # (n, S)
    spread = filled.std(dim=-1).repeat_interleave(group, dim=0)  # (n, S): the group's reward std, the advantages' unit
    # AgentPRM: promises M(s_k, a_k) of every hour, trained on the outcome; their progress is per-hour credit
    promises = process_reward(torch.cat([contexts, actions], dim=-1)).squeeze(-1)  # (n, S, H)
    flat_valid = valid.reshape(-1)
    prm_loss, prm_metrics = agentprm_loss(
        promises.reshape(-1, horizon)[flat_valid], reward.reshape(-1)[flat_valid], torch.ones(int(flat_valid.sum()), horizon, device=device), AgentPRMConfig()
    )
    prm_optimizer.zero_grad()
    prm_loss.backward()
    prm_optimizer.step()
    progress = promises.detach() - torch.cat([torch.zeros_like(promises[..., :1]), promises.detach()[..., :-1]], dim=-1)  # (n, S, H)
    # per-hour credit moves advantage between the hours of a rollout (zero sum over them), in the outcome's units
    credit = (progress - progress.mean(dim=-1, keepdim=True)) / (spread[:, :, None] + 1e-4)
    token_advantages = advantages[:, :, None] + config.prm_weight * credit  # (n, S, H)
    mask = valid[:, :, None].expand_as(token_advantages)
    metrics.update({name: float(v) for name, v in prm_metrics.items()})
    metrics.update(_grpo_update(policy, optimizer, contexts, actions, old_logprobs, token_advantages, mask, config))
    return metrics


def _grpo_config(config: CoordinationConfig) -> GRPOConfig:
    """The GRPO-family settings of ``config.algo``."""
    return GRPOConfig(
        num_generations=config.group_size,
        learning_rate=config.learning_rate,
        loss_type="dapo" if config.algo == "dapo" else "grpo",
        num_iterations=config.update_iterations,
        adaptive_clipping=BAPOConfig() if config.algo == "bapo" else None,
    )


def _grpo_update(
    policy: ReferencePolicy,
    optimizer: torch.optim.Optimizer,
    contexts: torch.Tensor,
    actions: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    config: CoordinationConfig,
) -> dict[str, float]:
    """``update_iterations`` steps of the GRPO / DAPO / BAPO loss; each (row, agent, hour) decision is one sequence of K tokens."""
    grpo = _grpo_config(config)
    flat_contexts = contexts.reshape(-1, contexts.shape[-1])
    flat_actions = actions.reshape(-1, actions.shape[-1])
    flat_old = old_logprobs.reshape(-1, old_logprobs.shape[-1])
    flat_advantages = advantages.reshape(-1)
    token_mask = mask.reshape(-1, 1).expand_as(flat_actions).float()
    metrics: dict[str, torch.Tensor] = {}
    for _ in range(grpo.num_iterations):
        _, logprobs, entropy, _ = policy.subsets.get_action_and_value(flat_contexts, flat_actions)
        common = {"loss_type": grpo.loss_type, "num_items_in_batch": token_mask.sum()}
        if grpo.adaptive_clipping is not None:
            loss, metrics = bapo_loss(logprobs, flat_old, flat_advantages, token_mask, config=grpo.adaptive_clipping, **common)
        else:
            loss, metrics = grpo_loss(logprobs, flat_old, flat_advantages, token_mask, epsilon=grpo.epsilon, epsilon_high=grpo.upper_epsilon, **common)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(policy.parameters(), grpo.max_grad_norm)
        optimizer.step()
        metrics["losses/entropy"] = (entropy * token_mask).sum().detach() / token_mask.sum().clamp_min(1)
    return {name: float(value) for name, value in metrics.items()}


def _ppo_update(
    policy: ReferencePolicy,
    optimizer: torch.optim.Optimizer,
    contexts: torch.Tensor,
    actions: torch.Tensor,
    old_logprobs: torch.Tensor,
    old_values: torch.Tensor,
    errors: torch.Tensor,
    realism_reward: torch.Tensor,
    config: CoordinationConfig,
) -> dict[str, float]:
    """PPO on per-hour rewards ``-nMSE`` (0 where the system has no target that hour), GAE over the hours."""
    ppo = PPOConfig(learning_rate=config.learning_rate, update_epochs=config.update_iterations)
    n, s, horizon = errors.shape
    rewards = torch.nan_to_num(-errors, nan=0.0)  # (n, S, H)
    rewards[:, :, -1] += config.realism_weight * realism_reward[:, None]
    dones = torch.zeros_like(rewards)
    dones[:, :, -1] = 1.0
    time_major = lambda x: x.reshape(n * s, horizon).T  # noqa: E731  (n, S, H) -> (H, n * S)
    advantages, returns = gae(
        time_major(rewards), time_major(old_values), time_major(dones), torch.zeros(n * s, device=errors.device), gamma=ppo.gamma, gae_lambda=ppo.gae_lambda
    )
    advantages, returns = advantages.T.reshape(-1), returns.T.reshape(-1)  # (n * S * H,)
    if ppo.norm_adv:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    flat_contexts = contexts.reshape(-1, contexts.shape[-1])
    flat_actions = actions.reshape(-1, actions.shape[-1])
    flat_old = old_logprobs.reshape(-1, old_logprobs.shape[-1]).sum(-1)  # a subset's log-probability
    flat_old_values = old_values.reshape(-1)
    metrics: dict[str, torch.Tensor] = {}
    for _ in range(ppo.update_epochs):
        _, logprobs, entropy, values = policy.subsets.get_action_and_value(flat_contexts, flat_actions)
        policy_loss, metrics = ppo_policy_loss(logprobs.sum(-1), flat_old, advantages, clip_coef=ppo.clip_coef)
        value_loss = ppo_value_loss(values, flat_old_values, returns, clip_coef=ppo.clip_coef if ppo.clip_vloss else None)
        entropy_mean = entropy.sum(-1).mean()
        loss = policy_loss - ppo.ent_coef * entropy_mean + ppo.vf_coef * value_loss
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(policy.parameters(), ppo.max_grad_norm)
        optimizer.step()
        metrics = {**metrics, "losses/value_loss": value_loss.detach(), "losses/entropy": entropy_mean.detach()}
    return {name: float(value) for name, value in metrics.items()}


def _train_realism_critic(
    twin: PatientTwin, arrays: HourlyArrays, candidates: dict[int, pl.DataFrame], config: CoordinationConfig, rng: np.random.Generator
) -> RealismCritic:
    """Fit the POLAR critic on train problems: real next hours against the twin's rollouts (draws and means, references "all")."""
    starts_all = arrays.starts(horizon=REALISM_HOURS, per_stay=None, min_context=config.min_context, seed=config.seed)
    if starts_all.height < 2:
        raise ValueError(f"the realism critic needs train stays with {REALISM_HOURS} hours after their context")
    feedback = tuple(v for v in twin.variables if v in twin.agents.config.feedback_variables)
    critic = RealismCritic.build(
        RealismCriticConfig(variables=feedback, context_dim=summary_size(len(twin.systems)), hidden_size=config.hidden_size)
    )
    twin.realism_critic = critic
    optimizer = torch.optim.Adam(critic.model.parameters(), lr=config.learning_rate)
    context_hours = twin.agents.config.context_hours
    for step in range(config.realism_steps):
        starts = _problems(arrays, starts_all, max(2, config.problems_per_step), rng)
        batch = arrays.batch(starts, context_hours=context_hours, horizon=REALISM_HOURS)
        truth = arrays.targets(starts, horizon=REALISM_HOURS)
        seed = config.seed + step
        draws = twin.rollout(batch, REALISM_HOURS, references="all", correct=config.correct, seed=seed).values
        means = twin.rollout(batch, REALISM_HOURS, references="all", correct=config.correct, seed=seed, mean=True).values
        context, reference, real, simulated = twin.realism_inputs(batch, truth, np.concatenate([draws, means]))
        critic.fit_step(optimizer, context, reference, real, simulated)
    return critic


def _validation_realism(
    twin: PatientTwin, arrays: HourlyArrays, starts: pl.DataFrame, context_hours: int, config: CoordinationConfig
) -> dict[str, float]:
    """The critic's realism score of validation rollouts (draws) with references "all" and with the policy."""
    batch = arrays.batch(starts, context_hours=context_hours, horizon=REALISM_HOURS)
    truth = arrays.targets(starts, horizon=REALISM_HOURS)
    return {
        references: twin.realism_score(batch, truth, twin.rollout(batch, REALISM_HOURS, references=references, correct=config.correct, seed=config.seed))
        for references in ("all", "policy")
    }


COORDINATION_FILE = "coordination.json"
"""Record of the coordination run (settings, validation figures, consult rates, per-step metrics)."""


def save_coordination(result: CoordinationResult, config: CoordinationConfig, model_dir: Path, out: Path) -> list[Path]:
    """Write the policy (and critic) with the agents of ``model_dir`` into ``out``; returns the files written.

    ``out == model_dir`` adds the files to the model directory (each written atomically); another
    ``out`` receives a copy of the model directory first, the whole written atomically.
    """
    model_dir, out = Path(model_dir), Path(out)
    record = json.dumps({"config": config.to_dict(), **result.summary()}, indent=2, allow_nan=False) + "\n"

    def write(directory: Path) -> None:
        result.policy.save(directory)
        if result.critic is not None:
            result.critic.save(directory)
        atomic_write_text(directory / COORDINATION_FILE, record)

    write_beside_model(model_dir, out, write)
    names = [POLICY_CONFIG_FILE, POLICY_WEIGHTS_FILE, COORDINATION_FILE]
    if result.critic is not None:
        names += [CRITIC_CONFIG_FILE, CRITIC_WEIGHTS_FILE]
    return [out / name for name in names]
