"""Layer 0: helpers every other layer may use (errors, atomic writes, seeding, devices, progress)."""

from organsim.utils.devices import resolve_device
from organsim.utils.errors import CatalogError, DataError, OrgansimError
from organsim.utils.io import atomic_directory, atomic_write_bytes, atomic_write_text
from organsim.utils.progress import progress_bar
from organsim.utils.seeding import seed_everything

__all__ = [
    "CatalogError",
    "DataError",
    "OrgansimError",
    "atomic_directory",
    "atomic_write_bytes",
    "atomic_write_text",
    "progress_bar",
    "resolve_device",
    "seed_everything",
]
