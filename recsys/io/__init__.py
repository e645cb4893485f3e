"""Reading input tables and worlds with validation: one loader, one error type, one report."""

from recsys.io.errors import DataError, DatasetError, TableError
from recsys.io.report import LoadReport, LoadResult
from recsys.io.tables import find_table_file, load_table, table_format
from recsys.io.world import World, load_world

__all__ = [
    "DataError",
    "DatasetError",
    "LoadReport",
    "LoadResult",
    "TableError",
    "World",
    "find_table_file",
    "load_table",
    "load_world",
    "table_format",
]
