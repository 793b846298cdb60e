"""AgentPRM: process-reward targets by TD + GAE and the promise/progress loss (Xi et al. 2025).

A process reward model M scores each step t of a trajectory with a *promise*
``M(s_t, a_t)`` (the chance the task ends well from here) and its *progress*
``M(s_t, a_t) - M(s_{t-1}, a_{t-1})``. Labels come from the current model itself by TD with GAE:
the value of being at step t is ``M(s_{t-1}, a_{t-1})`` (``initial_promise`` before the first
step), intermediate rewards are 0 and the last step's successor is the outcome reward R, so

    delta_t = gamma * M(s_t, a_t) - M(s_{t-1}, a_{t-1})        for t < T
    delta_T = R - M(s_{T-1}, a_{T-1})                           (terminal = outcome reward)
    A_t     = sum_l (gamma * lambda)^l delta_{t+l}
    Q_t     = A_t + M(s_{t-1}, a_{t-1})                         (so Q_T = R)

``L_Q = mean_t (M(s_t, a_t) - Q_t)^2`` and ``L_A = mean_t (M(s_t, a_t) - M(s_{t-1}, a_{t-1}) - A_t)^2``
with the targets detached; the loss is ``L_Q + beta * L_A``. With these TD targets ``L_A`` has
the value of ``L_Q`` but a different gradient: it also moves the previous step's promise, so
``beta`` sets how much of each error is credited back to the step before.

Steps are indexed from 0 here; ``mask`` marks each trajectory's valid steps, a prefix.
"""

from dataclasses import dataclass

import torch
from torch import Tensor

from organsim.rl.advantages import gae


@dataclass
class AgentPRMConfig:
    """Hyperparameters of :func:`agentprm_loss`.

    Attributes
    ----------
    gamma : float
        Discount in [0, 1].
    gae_lambda : float
        GAE lambda in [0, 1]; 1 gives Monte-Carlo targets (``gamma^(T-t) R``).
    beta : float
        Weight of the progress loss L_A, >= 0.
    """

    gamma: float = 1.0
    gae_lambda: float = 0.95
    beta: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 <= self.gae_lambda <= 1.0:
            raise ValueError(
                f"AgentPRMConfig: gamma={self.gamma} and gae_lambda={self.gae_lambda} must be in [0, 1]"
            )
        if self.beta < 0.0:
            raise ValueError(f"AgentPRMConfig.beta={self.beta} must be >= 0")


def _previous_promises(promises: Tensor, initial_promise: Tensor | None) -> Tensor:
    first = promises.new_zeros(promises.shape[0]) if initial_promise is None else initial_promise
    return torch.cat([first.unsqueeze(-1), promises[:, :-1]], dim=-1)


def agentprm_targets(
    promises: Tensor,
    outcomes: Tensor,
    mask: Tensor,
    *,
    gamma: float,
    gae_lambda: float,
    initial_promise: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Progress and promise targets ``(A_t, Q_t)`` by TD with GAE from the current model.

    Parameters
    ----------
    promises : Tensor, shape (B, T)
        ``M(s_t, a_t)`` for every step (detached inside).
    outcomes : Tensor, shape (B,)
        Outcome reward R of each trajectory.
    mask : Tensor, shape (B, T)
        1 on valid steps (a non-empty prefix of each row), 0 on padding.
    gamma, gae_lambda : float
    initial_promise : Tensor, shape (B,), optional
        Value before the first step; zeros when None.

    Returns
    -------
    advantages, q_targets : Tensor, shape (B, T)
        ``A_t`` and ``Q_t``; zero on padding.
    """
    mask = mask.to(promises.dtype)
    lengths = mask.sum(dim=-1).long()
    if (lengths < 1).any():
        raise ValueError("agentprm_targets: every trajectory needs at least one valid step")
    promises = promises.detach() * mask
    previous = _previous_promises(promises, initial_promise).detach()
    last = torch.nn.functional.one_hot(lengths - 1, promises.shape[1]).to(promises.dtype)  # (B, T)
    rewards = last * outcomes.unsqueeze(-1).to(promises.dtype)  # R on each last valid step
    # GAE is time-major: the "value" of step t is the previous promise, the successor of step t
    # is promise t (dropped on the terminal step by its done flag).
    advantages, _ = gae(
        rewards.T,
        previous.T,
        last.T,
        promises[:, -1],
        gamma=gamma,
        gae_lambda=gae_lambda,
    )
    # gae bootstraps step t from values[t + 1] = previous[t + 1] = promises[t], as required.
    advantages = advantages.T * mask
    return advantages, (advantages + previous) * mask


def agentprm_loss(
    promises: Tensor,
    outcomes: Tensor,
    mask: Tensor,
    config: AgentPRMConfig,
    *,
    initial_promise: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """AgentPRM loss ``L_Q + beta * L_A`` with TD + GAE targets.

    Parameters
    ----------
    promises : Tensor, shape (B, T)
        Model output ``M(s_t, a_t)`` (with grad).
    outcomes : Tensor, shape (B,)
    mask : Tensor, shape (B, T)
    config : AgentPRMConfig
    initial_promise : Tensor, shape (B,), optional
        Model value before the first step (with grad if it is learned); zeros when None.

    Returns
    -------
    loss : Tensor, scalar
    metrics : dict of detached scalar tensors
        ``losses/promise_loss`` (L_Q), ``losses/progress_loss`` (L_A), ``losses/prm_loss``.
    """
    mask = mask.to(promises.dtype)
    advantages, q_targets = agentprm_targets(
        promises,
        outcomes,
        mask,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        initial_promise=None if initial_promise is None else initial_promise.detach(),
    )
    valid = mask.sum().clamp(min=1.0)
    promise_loss = (((promises - q_targets) ** 2) * mask).sum() / valid
    progress = promises - _previous_promises(promises, initial_promise)
    progress_loss = (((progress - advantages) ** 2) * mask).sum() / valid
    loss = promise_loss + config.beta * progress_loss
    return loss, {
        "losses/promise_loss": promise_loss.detach(),
        "losses/progress_loss": progress_loss.detach(),
        "losses/prm_loss": loss.detach(),
    }
