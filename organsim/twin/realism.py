"""A POLAR-style realism critic: tells real stretches of a stay from the twin's simulations of them.

The critic is :class:`organsim.rl.PolarRewardModel` ``r(context, reference, candidate)``. For a
forecast problem (a stay up to hour ``t``) the context is its state summary
(:mod:`organsim.twin.summary`), the reference a real stretch of *another* problem (an example of
the real process), and the candidate either the problem's own real next :data:`REALISM_HOURS`
hours (same process as the reference) or the twin's simulation of them (another process).
Training minimises :func:`organsim.rl.polar_loss`: real candidates should score above simulated
ones. Rollouts fed back as draws and as means are both used as simulated candidates.

A stretch is read over the hourly-charted variables only (the ones the twin feeds back), as
z-scores relative to the last context value, with the real stretch's missing hours filled by
carrying the last value forward. The simulated candidate is masked with the same problem's real
missingness, so missing data cannot give it away.

:meth:`RealismCritic.score` is the realism score of simulated stretches: the mean over problems of
``sigmoid(r(p, ref, simulated) - r(p, ref, real))``; 0.5 means the critic cannot tell them from
the real ones, values near 0 that it always can. ``organsim coordinate --realism-weight`` adds
``r(p, ref, simulated)`` to the coordination reward.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from organsim.agents.features import Z_CLIP
from organsim.data.normalize import Normaliser
from organsim.rl import PolarRewardModel, polar_loss
from organsim.twin.saved_module import load_module_weights, read_module_config, save_module
from organsim.utils.errors import DataError

REALISM_HOURS = 6
"""Length of the stretches the critic compares (hours after the context)."""
CRITIC_FORMAT = "organsim.twin.realism_critic/1"
CRITIC_CONFIG_FILE = "realism_critic.json"
CRITIC_WEIGHTS_FILE = "realism_critic.safetensors"


@dataclass(frozen=True)
class RealismCriticConfig:
    """Architecture of :class:`RealismCritic` (stored in ``realism_critic.json``).

    Attributes
    ----------
    variables
        The hourly-charted variables a stretch is read over.
    context_dim
        Size of the state summary.
    hours
        Stretch length.
    embedding_dim, hidden_size
        Sizes of :class:`~organsim.rl.PolarRewardModel`.
    """

    variables: tuple[str, ...]
    context_dim: int
    hours: int = REALISM_HOURS
    embedding_dim: int = 32
    hidden_size: int = 64


def stretch_features(
    stretch: np.ndarray,
    observed: np.ndarray,
    last_context: np.ndarray,
    *,
    normaliser: Normaliser,
    variables: tuple[str, ...],
) -> np.ndarray:
    """``(n, hours * V)`` float32 features of stretches (see the module docstring).

    Parameters
    ----------
    stretch
        ``(n, hours, V)`` raw values of the stretch's hours.
    observed
        ``(n, hours, V)`` bool: the entries read (the real stretch's measured ones); the others
        are filled by carrying the last read value (or the context's) forward.
    last_context
        ``(n, V)`` last value of the context (NaN = never measured).
    normaliser, variables
        Training-split statistics and the ``V`` codes.
    """
    z = np.clip(normaliser.zscore(np.where(observed, stretch, np.nan), variables), -Z_CLIP, Z_CLIP)
    anchor = np.nan_to_num(np.clip(normaliser.zscore(last_context, variables), -Z_CLIP, Z_CLIP), nan=0.0)  # (n, V)
    filled = np.empty_like(z)
    previous = anchor
    for hour in range(z.shape[1]):
        previous = np.where(np.isnan(z[:, hour]), previous, z[:, hour])
        filled[:, hour] = previous
    return (filled - anchor[:, None]).reshape(len(z), -1).astype(np.float32)


class RealismCritic:
    """The trained discriminator and the settings it reads stretches with.

    Parameters
    ----------
    model
        The POLAR reward model.
    config
        Its architecture and the variables of a stretch.
    """

    def __init__(self, model: PolarRewardModel, config: RealismCriticConfig) -> None:
        self.model = model.eval()
        self.config = config

    @classmethod
    def build(cls, config: RealismCriticConfig) -> RealismCritic:
        """An untrained critic of ``config``'s size."""
        model = PolarRewardModel(
            config.context_dim, config.hours * len(config.variables), embedding_dim=config.embedding_dim, hidden_size=config.hidden_size
        )
        return cls(model, config)

    def rewards(self, context: torch.Tensor, reference: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
        """``(n,)`` scores ``r(context, reference, candidate)`` (no grad)."""
        with torch.no_grad():
            return self.model(context, reference, candidate)

    def score(self, context: torch.Tensor, reference: torch.Tensor, real: torch.Tensor, simulated: torch.Tensor) -> float:
        """The realism score: mean ``sigmoid(r(p, ref, simulated) - r(p, ref, real))`` (0.5 = indistinguishable)."""
        margin = self.rewards(context, reference, simulated) - self.rewards(context, reference, real)
        return float(torch.sigmoid(margin).mean())

    def fit_step(self, optimizer: torch.optim.Optimizer, context: torch.Tensor, reference: torch.Tensor, real: torch.Tensor, simulated: torch.Tensor) -> dict[str, float]:
        """One optimiser step of :func:`organsim.rl.polar_loss` (real candidates above simulated); returns its metrics."""
        self.model.train()
        loss, metrics = polar_loss(self.model(context, reference, real), self.model(context, reference, simulated))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        self.model.eval()
        return {name: float(value) for name, value in metrics.items()}

    def save(self, directory: str | Path) -> Path:
        """Write ``realism_critic.json`` and ``realism_critic.safetensors`` into ``directory`` (each atomically)."""
        directory = Path(directory)
        save_module(self.model, {**asdict(self.config), "variables": list(self.config.variables)}, fmt=CRITIC_FORMAT,
                    config_path=directory / CRITIC_CONFIG_FILE, weights_path=directory / CRITIC_WEIGHTS_FILE)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> RealismCritic:
        """Rebuild from :meth:`save` output; a missing or malformed file is a DataError naming it."""
        directory = Path(directory)
        paths = {"config_path": directory / CRITIC_CONFIG_FILE, "weights_path": directory / CRITIC_WEIGHTS_FILE}
        fields = read_module_config(
            fmt=CRITIC_FORMAT, incomplete="the realism critic is incomplete; train it with `organsim coordinate --realism-weight`",
            what="realism critic", **paths)
        try:
            config = RealismCriticConfig(**{**fields, "variables": tuple(fields["variables"])})
        except (KeyError, TypeError) as exc:
            raise DataError(f"malformed realism critic config: {exc}", file=paths["config_path"]) from exc
        critic = cls.build(config)
        load_module_weights(critic.model, what="critic", **paths)
        return critic


def has_realism_critic(directory: str | Path) -> bool:
    """Whether ``directory`` holds a saved realism critic."""
    return (Path(directory) / CRITIC_CONFIG_FILE).is_file()

