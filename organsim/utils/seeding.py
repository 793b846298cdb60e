"""One seed for Python, NumPy and (when installed) torch."""

from __future__ import annotations

import os
import random

import numpy as np


def seed_everything(seed: int) -> np.random.Generator:
    """Seed ``random``, NumPy's legacy global state and torch; return a fresh NumPy Generator."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import torch
    except ImportError:  # torch is a dependency, but seeding must not require it
        pass
    else:
        torch.manual_seed(seed)
    return np.random.default_rng(seed)
