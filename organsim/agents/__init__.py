"""Layer 4: organ simulator agents and the baseline forecasters they are reported beside."""

from organsim.agents.baselines import (
    GRUConfig,
    GRUForecaster,
    LastObservationForecaster,
    RidgeForecaster,
    encode_history,
)

__all__ = ["GRUConfig", "GRUForecaster", "LastObservationForecaster", "RidgeForecaster", "encode_history"]
