"""Layer 4: organ simulator agents and the baseline forecasters they are reported beside."""

from organsim.agents.baselines import (
    GRUConfig,
    GRUForecaster,
    LastObservationForecaster,
    RidgeForecaster,
    encode_history,
)

__all__ = ["GRUConfig", "GRUForecaster", "LastObservationForecaster", "RidgeForecaster", "encode_history"]

# organ agents (engineer B): network, training, checkpoints, forecaster
from organsim.agents.checkpoint import TrainedAgents  # noqa: E402
from organsim.agents.distribution import BinnedDistribution  # noqa: E402
from organsim.agents.forecaster import AgentForecaster  # noqa: E402
from organsim.agents.model import PRESETS, AgentConfig, OrganAgents  # noqa: E402
from organsim.agents.training import TrainConfig, TrainResult, train_agents  # noqa: E402

__all__ += [
    "PRESETS",
    "AgentConfig",
    "AgentForecaster",
    "BinnedDistribution",
    "OrganAgents",
    "TrainConfig",
    "TrainResult",
    "TrainedAgents",
    "train_agents",
]
