"""Whole-notebook jobs: parameters, the run record, the runner (nbclient on a container kernel) and the
SQLite job store."""

from .parameters import inject_parameters, parse_parameter_value, parse_parameters
from .provenance import RunRecord
from .runner import (
    ExecuteRequest,
    ExecutionResult,
    default_output_path,
    execute_notebook,
    execute_notebook_async,
)

__all__ = [
    "ExecuteRequest",
    "ExecutionResult",
    "RunRecord",
    "default_output_path",
    "execute_notebook",
    "execute_notebook_async",
    "inject_parameters",
    "parse_parameter_value",
    "parse_parameters",
]
