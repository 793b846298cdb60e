"""Layer 1: the variable and treatment catalog (data_schemas/*.yaml) as typed, frozen objects.

>>> from organsim.catalog import load_catalog
>>> catalog = load_catalog()
>>> catalog.variable("map").unit
'mmHg'
>>> [v.code for v in catalog.variables_of("renal")]
['creatinine', 'bun', 'potassium', 'urine_output']
"""

from organsim.catalog.loader import default_schema_dir, load_catalog
from organsim.catalog.models import (
    SYSTEMS,
    Catalog,
    EventDefinition,
    StaticVariable,
    System,
    TableColumn,
    TableSchema,
    Treatment,
    Variable,
)

__all__ = [
    "SYSTEMS",
    "Catalog",
    "EventDefinition",
    "StaticVariable",
    "System",
    "TableColumn",
    "TableSchema",
    "Treatment",
    "Variable",
    "default_schema_dir",
    "load_catalog",
]
