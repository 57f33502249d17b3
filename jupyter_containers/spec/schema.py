"""The JSON Schema of a spec file: the single definition the parser validates against and the REST API
serves, so editors, the sidebar and the CLI agree on what is allowed.

Every property carries a ``description`` that doubles as the "what is allowed" half of error messages.
"""

from __future__ import annotations

from typing import Any

from ..units import CPUS_HELP, DURATION_HELP, MAX_CPUS, MAX_DURATION, MAX_GPUS, MAX_PIDS, MAX_SIZE, MIN_CPUS, SIZE_HELP

ENV_NAME_PATTERN = r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$"
ENV_NAME_HELP = (
    "lower-case letters, digits, '.', '_' and '-', starting and ending with a letter or digit "
    "(it becomes part of the image name)"
)
# The string patterns are written so that no two neighbouring optional parts can match the same text:
# fastjsonschema runs them with Python's backtracking re, and an ambiguous pattern turns a long run of
# spaces or digits into a hang.
_SIZE = {
    "description": SIZE_HELP,
    "oneOf": [
        {"type": "integer", "minimum": 1, "maximum": MAX_SIZE},
        {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(?:[kKmMgGtTpP](?:[iI]?[bB])?\s*|[bB]\s*)?$"},
    ],
}

RESOURCES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "default run-time limits, overridable per run",
    "additionalProperties": False,
    "properties": {
        "cpus": {
            "description": CPUS_HELP,
            "oneOf": [
                {"type": "number", "minimum": MIN_CPUS, "maximum": MAX_CPUS},
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*$"},
            ],
        },
        "memory": _SIZE,
        "memory_swap": {
            "description": f"{SIZE_HELP}, or -1 for unlimited swap",
            "oneOf": [{"type": "integer", "minimum": -1, "maximum": MAX_SIZE}, _SIZE["oneOf"][1]],
        },
        "gpus": {
            "description": 'a number of GPUs, "all", or a list of device ids such as ["0", "2"]',
            "oneOf": [
                {"type": "integer", "minimum": 0, "maximum": MAX_GPUS},
                {"type": "string", "enum": ["all"]},
                {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1, "uniqueItems": True},
            ],
        },
        "shm_size": _SIZE,
        "pids": {
            "description": f"the maximum number of processes, a whole number from 1 to {MAX_PIDS}",
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_PIDS,
        },
        "timeout": {
            "description": DURATION_HELP,
            "oneOf": [
                {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_DURATION},
                {
                    "type": "string",
                    "pattern": r"^\s*(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d)\s*)*"
                    r"(?:\d+(?:\.\d+)?\s*(?:(?:ms|s|m|h|d)\s*)?)?$",
                },
            ],
        },
        "network": {"description": "true (bridge network) or false (no network at all)", "type": "boolean"},
    },
}

ENVIRONMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "one named environment",
    "additionalProperties": False,
    "properties": {
        "description": {"description": "a short human description", "type": "string"},
        "base": {
            "description": 'a base image reference such as "python:3.11-slim" (with Python 3 on it)',
            "type": "string",
            "pattern": r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$",
        },
        "python": {
            "description": 'a Python version such as "3.11" or "3.11.9"',
            "type": "string",
            "pattern": r"^3(\.\d+){1,2}$",
        },
        "pip": {
            "description": 'a list of pip requirement strings such as "numpy>=1.26"',
            "type": "array",
            "items": {"type": "string", "minLength": 1},
        },
        "apt": {
            "description": 'a list of Debian package names such as "libgl1" (optionally "name=version")',
            "type": "array",
            "items": {"type": "string", "pattern": r"^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+:~-]+)?$"},
        },
        "requirements": {
            "description": "a list of requirements files, relative to the spec file",
            "type": "array",
            "items": {"type": "string", "minLength": 1},
        },
        "post_build": {
            "description": "a list of shell commands run at the end of the build",
            "type": "array",
            "items": {"type": "string", "minLength": 1},
        },
        "env": {
            "description": 'a table of environment variables with string values, such as { PYTHONHASHSEED = "0" }',
            "type": "object",
            "propertyNames": {"pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
            "additionalProperties": {"type": "string"},
        },
        "resources": RESOURCES_SCHEMA,
    },
}

SPEC_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "$id": "https://jupyter.org/schema/jupyter-containers/spec-v1.json",
    "title": "jupyter-containers spec",
    "description": "a table [environments] holding one table per environment",
    "type": "object",
    "additionalProperties": False,
    "required": ["environments"],
    "properties": {
        "environments": {
            "description": "one table per environment, such as [environments.vision]",
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": ENV_NAME_PATTERN},
            "additionalProperties": ENVIRONMENT_SCHEMA,
        },
    },
}
