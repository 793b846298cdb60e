"""The reference-selection policy: for each organ agent and hour, which other systems to consult.

One :class:`organsim.rl.SubsetPolicy` shared by the nine agents: its context is the stay's state
summary (:mod:`organsim.twin.summary`) with a one-hot of the deciding agent's system, and it
decides, independently for each of the other eight systems, whether that agent consults it this
hour. Its own system is always read (the agents' input forces it on).

Saved beside the agents in the model directory (``reference_policy.safetensors`` and
``reference_policy.json``, written by ``organsim coordinate``), so that
:meth:`organsim.twin.PatientTwin.load` picks it up.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from organsim.rl import SubsetPolicy
from organsim.twin.saved_module import load_module_weights, read_module_config, save_module
from organsim.twin.summary import summary_size
from organsim.utils.errors import DataError

POLICY_FORMAT = "organsim.twin.reference_policy/1"
POLICY_CONFIG_FILE = "reference_policy.json"
POLICY_WEIGHTS_FILE = "reference_policy.safetensors"


@dataclass(frozen=True)
class ReferencePolicyConfig:
    """Architecture of :class:`ReferencePolicy` (stored in ``reference_policy.json``).

    Attributes
    ----------
    systems
        The organ systems, in the agents' order.
    hidden_size
        Width of the policy's two hidden layers.
    value_head
        A critic head on the same context (PPO's state value).
    """

    systems: tuple[str, ...]
    hidden_size: int = 64
    value_head: bool = False

    def __post_init__(self) -> None:
        if len(self.systems) < 2:
            raise ValueError(f"reference selection needs at least two systems, got {list(self.systems)}")
        if self.hidden_size < 1:
            raise ValueError(f"hidden_size must be >= 1, got {self.hidden_size}")


class ReferencePolicy(nn.Module):
    """Which of the other systems each agent consults, from the state summary (see the module docstring).

    Parameters
    ----------
    config
        The architecture.

    Attributes
    ----------
    subsets
        The factorised-Bernoulli policy over the ``S - 1`` other systems.
    others
        ``(S, S - 1)`` int64: the systems agent ``s``'s decisions refer to, in order.
    """

    def __init__(self, config: ReferencePolicyConfig) -> None:
        super().__init__()
        self.config = config
        n = len(config.systems)
        self.subsets = SubsetPolicy(summary_size(n) + n, n - 1, hidden_size=config.hidden_size, value_head=config.value_head)
        others = torch.tensor([[r for r in range(n) if r != s] for s in range(n)], dtype=torch.long)
        self.register_buffer("others", others, persistent=False)

    @property
    def n_systems(self) -> int:
        return len(self.config.systems)

    def contexts(self, summary: torch.Tensor) -> torch.Tensor:
        """``(n, F)`` summaries -> ``(n, S, F + S)`` per-agent contexts (summary, one-hot of the agent)."""
        n = summary.shape[0]
        agent = torch.eye(self.n_systems, dtype=summary.dtype, device=summary.device).expand(n, -1, -1)  # (n, S, S)
        return torch.cat([summary[:, None, :].expand(-1, self.n_systems, -1), agent], dim=-1)

    def to_matrix(self, choices: torch.Tensor) -> torch.Tensor:
        """``(n, S, S - 1)`` 0/1 decisions -> ``(n, S, S)`` bool reference matrix (``[.., s, r]``: s consults r; diagonal False)."""
        n = choices.shape[0]
        matrix = torch.zeros(n, self.n_systems, self.n_systems, dtype=torch.bool, device=choices.device)
        return matrix.scatter(2, self.others.expand(n, -1, -1), choices.bool())

    def probabilities(self, summary: torch.Tensor) -> torch.Tensor:
        """``(n, S, S - 1)`` probability that each agent consults each other system."""
        with torch.no_grad():
            return torch.sigmoid(self.subsets.actor(self.contexts(summary)))

    def decide(self, summary: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(n, S, S - 1)`` float 0/1 decisions: the most likely set (each probability > 1/2), or a draw with ``generator``."""
        probabilities = self.probabilities(summary)
        if generator is None:
            return (probabilities > 0.5).float()
        return torch.bernoulli(probabilities, generator=generator)

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """Write ``reference_policy.json`` and ``reference_policy.safetensors`` into ``directory`` (each atomically)."""
        directory = Path(directory)
        save_module(self, {**asdict(self.config), "systems": list(self.config.systems)}, fmt=POLICY_FORMAT,
                    config_path=directory / POLICY_CONFIG_FILE, weights_path=directory / POLICY_WEIGHTS_FILE)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> ReferencePolicy:
        """Rebuild from a directory written by :meth:`save`; a missing or malformed file is a DataError naming it."""
        directory = Path(directory)
        paths = {"config_path": directory / POLICY_CONFIG_FILE, "weights_path": directory / POLICY_WEIGHTS_FILE}
        fields = read_module_config(fmt=POLICY_FORMAT, incomplete="the reference policy is incomplete; train it with `organsim coordinate`",
                                    what="reference policy", **paths)
        try:
            config = ReferencePolicyConfig(**{**fields, "systems": tuple(fields["systems"])})
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"malformed reference policy config: {exc}", file=paths["config_path"]) from exc
        policy = cls(config)
        load_module_weights(policy, what="policy", **paths)
        return policy.eval()


def has_reference_policy(directory: str | Path) -> bool:
    """Whether ``directory`` holds a saved reference policy (its config file)."""
    return (Path(directory) / POLICY_CONFIG_FILE).is_file()
