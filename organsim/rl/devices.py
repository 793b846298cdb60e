"""Device selection for the RL trainers (the RL core imports nothing else from organsim)."""

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"`` into CUDA when available, else CPU; pass anything else to ``torch.device``.

    Raises
    ------
    ValueError
        When CUDA is asked for explicitly but is not available.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but CUDA is not available; use 'auto' or 'cpu'"
        )
    return resolved
