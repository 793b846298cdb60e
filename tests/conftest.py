"""Shared fixtures: the catalog, and the real PhysioNet 2019 data in ../shared when it is present."""

from __future__ import annotations

from pathlib import Path

import pytest

from organsim.catalog import Catalog, load_catalog

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__import__("os").environ.get("ORGANSIM_SHARED", REPO.parent / "shared"))
PHYSIONET_ARCHIVE = SHARED / "data" / "physionet2019" / "training_setB_part.tar.gz"


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="session")
def physionet_archive() -> Path:
    """The 6,000-stay PhysioNet 2019 archive; the test is skipped with a message when it is absent."""
    if not PHYSIONET_ARCHIVE.is_file():
        pytest.skip(f"real data absent: {PHYSIONET_ARCHIVE} not found (put ../shared beside the repository)")
    return PHYSIONET_ARCHIVE
