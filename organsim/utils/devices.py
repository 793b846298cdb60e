"""Device selection: ``auto`` means CUDA when present, else CPU."""

from __future__ import annotations


def resolve_device(device: str = "auto") -> str:
    """Return a torch device string for ``device`` ("auto", "cpu", "cuda", "cuda:1", ...).

    Raises ``ValueError`` when CUDA is requested but not available.
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use --device cpu or auto")
    return device
