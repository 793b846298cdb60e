"""Small policies whose one method returns everything the losses need (CleanRL style).

``get_action_and_value(inputs, action=None) -> (action, logprob, entropy, value)``: samples an
action when none is given, otherwise scores the given one.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Bernoulli, Categorical


def _layer(in_features: int, out_features: int, std: float = math.sqrt(2.0)) -> nn.Linear:
    """A linear layer with orthogonal weights of gain ``std`` and zero bias (CleanRL's layer_init)."""
    layer = nn.Linear(in_features, out_features)
    nn.init.orthogonal_(layer.weight, std)
    nn.init.zeros_(layer.bias)
    return layer


def _mlp(in_features: int, hidden_size: int, out_features: int, out_std: float) -> nn.Sequential:
    return nn.Sequential(
        _layer(in_features, hidden_size),
        nn.Tanh(),
        _layer(hidden_size, hidden_size),
        nn.Tanh(),
        _layer(hidden_size, out_features, std=out_std),
    )


class SubsetPolicy(nn.Module):
    """Factorised-Bernoulli policy over subsets of ``num_choices`` candidates, given a context.

    For each candidate k an independent Bernoulli decides "include or not" (e.g. whether an organ
    agent consults organ system k this hour). The K decisions are the "tokens" of the sequence
    the GRPO losses see.

    Parameters
    ----------
    context_dim : int
        Size of the context vector.
    num_choices : int
        K, the number of candidates.
    hidden_size : int
        Width of the two hidden layers.
    value_head : bool
        Add a critic head (needed by PPO, unused by GRPO).
    """

    def __init__(
        self, context_dim: int, num_choices: int, *, hidden_size: int = 64, value_head: bool = False
    ) -> None:
        super().__init__()
        if context_dim < 1 or num_choices < 1:
            raise ValueError(
                f"SubsetPolicy: context_dim={context_dim} and num_choices={num_choices} must be >= 1"
            )
        self.num_choices = num_choices
        self.actor = _mlp(context_dim, hidden_size, num_choices, out_std=0.01)
        self.critic = _mlp(context_dim, hidden_size, 1, out_std=1.0) if value_head else None

    def distribution(self, contexts: Tensor) -> Bernoulli:
        """The K independent Bernoullis for contexts of shape (B, context_dim)."""
        return Bernoulli(logits=self.actor(contexts))

    def get_action_and_value(
        self, contexts: Tensor, action: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """Sample (or score) subsets.

        Parameters
        ----------
        contexts : Tensor, shape (B, context_dim)
        action : Tensor, shape (B, K), optional
            0/1 inclusion indicators to score; sampled when None.

        Returns
        -------
        action : Tensor, shape (B, K), 0/1 floats
        logprob : Tensor, shape (B, K)
            Per-decision log-probabilities (sum over K for the subset's log-probability).
        entropy : Tensor, shape (B, K)
        value : Tensor, shape (B,), or None without a value head
        """
        dist = self.distribution(contexts)
        if action is None:
            action = dist.sample()
        value = self.critic(contexts).squeeze(-1) if self.critic is not None else None
        return action, dist.log_prob(action), dist.entropy(), value

    def subset_probabilities(self, contexts: Tensor, subsets: Tensor) -> Tensor:
        """Exact probability of each subset for each context (no grad).

        Parameters
        ----------
        contexts : Tensor, shape (B, context_dim)
        subsets : Tensor, shape (S, K)
            0/1 rows, e.g. :func:`all_subsets`.

        Returns
        -------
        Tensor, shape (B, S)
        """
        with torch.no_grad():
            logits = self.actor(contexts)  # (B, K)
            subsets = subsets.to(logits.dtype)
            log_include = F.logsigmoid(logits) @ subsets.T  # (B, S)
            log_exclude = F.logsigmoid(-logits) @ (1.0 - subsets).T  # (B, S)
            return torch.exp(log_include + log_exclude)


class CategoricalPolicy(nn.Module):
    """Actor(-critic) with a categorical action head for discrete-action episodic tasks.

    Parameters
    ----------
    observation_dim : int
    num_actions : int
    hidden_size : int
    value_head : bool
        Add a scalar critic (PPO); leave it out when a separate critic is used (DVPO).
    """

    def __init__(
        self,
        observation_dim: int,
        num_actions: int,
        *,
        hidden_size: int = 64,
        value_head: bool = True,
    ) -> None:
        super().__init__()
        if observation_dim < 1 or num_actions < 2:
            raise ValueError(
                f"CategoricalPolicy: need observation_dim >= 1 and num_actions >= 2, got "
                f"{observation_dim}, {num_actions}"
            )
        self.actor = _mlp(observation_dim, hidden_size, num_actions, out_std=0.01)
        self.critic = _mlp(observation_dim, hidden_size, 1, out_std=1.0) if value_head else None

    def get_action_and_value(
        self, observations: Tensor, action: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """Sample (or score) actions.

        Parameters
        ----------
        observations : Tensor, shape (B, observation_dim)
        action : Tensor, shape (B,), int64, optional

        Returns
        -------
        action : Tensor, shape (B,), int64
        logprob, entropy : Tensor, shape (B,)
        value : Tensor, shape (B,), or None without a value head
        """
        dist = Categorical(logits=self.actor(observations))
        if action is None:
            action = dist.sample()
        value = self.critic(observations).squeeze(-1) if self.critic is not None else None
        return action, dist.log_prob(action), dist.entropy(), value


def all_subsets(num_choices: int, *, device=None) -> Tensor:
    """Every subset of ``num_choices`` candidates as 0/1 rows, shape (2^K, K), in binary order."""
    if not 1 <= num_choices <= 20:
        raise ValueError(f"all_subsets: num_choices={num_choices} must be in [1, 20] (2^K rows)")
    codes = torch.arange(2**num_choices, device=device)
    bits = 2 ** torch.arange(num_choices, device=device)
    return ((codes.unsqueeze(-1) & bits) > 0).to(torch.float32)
