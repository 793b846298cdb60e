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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Group the tests for pytest-xdist's ``--dist loadgroup`` (``make test`` runs a worker per core):
    each test file runs on one worker, so its module fixtures are built once, and the tests marked
    ``exclusive`` (a local Ray cluster or a two-process torch.distributed group on one rendezvous
    port) run on one worker, one after another."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            exclusive = item.get_closest_marker("exclusive") is not None
            group = "exclusive" if exclusive else item.path.relative_to(REPO).as_posix()
            item.add_marker(pytest.mark.xdist_group(group))
