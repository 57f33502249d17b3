"""Whole-notebook jobs: the runner (nbclient on a container kernel) and the SQLite job store."""

from .runner import (
    ExecutionResult,
    default_output_path,
    execute_notebook,
    execute_notebook_async,
    inject_parameters,
    parse_parameter_value,
)

__all__ = [
    "ExecutionResult",
    "default_output_path",
    "execute_notebook",
    "execute_notebook_async",
    "inject_parameters",
    "parse_parameter_value",
]
