"""The JSON Schema of a spec file: the single definition the parser validates against and the REST API
serves, so editors, the sidebar and the CLI agree on what is allowed.

Every property carries a ``description`` that doubles as the "what is allowed" half of error messages.
"""

from __future__ import annotations

from typing import Any

from ..units import CPUS_HELP, DURATION_HELP, MAX_CPUS, MAX_DURATION, MAX_GPUS, MAX_PIDS, MAX_SIZE, MIN_CPUS, SIZE_HELP

#: The oldest Python an environment may ask for: ipykernel>=6.29 (every environment's kernel) needs 3.8,
#: and uv itself cannot create a virtualenv below 3.6.
MIN_PYTHON = (3, 8)
MIN_PYTHON_TEXT = "Python " + ".".join(map(str, MIN_PYTHON))
ENV_NAME_PATTERN = r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$"
#: ``HOST[:PORT]/REPOSITORY[/MORE]``: a registry host (a dot, a colon or ``localhost``) and a repository path.
REGISTRY_PATTERN = (
    r"^(?:localhost|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*:[0-9]{1,5})"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+$"
)
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
        "constraints": {
            "description": 'swarm targets: placement constraints such as ["node.labels.gpu==a100"] (ignored on a '
            "single engine)",
            "type": "array",
            "items": {"type": "string", "minLength": 1},
        },
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
        "find_links": {
            "description": "a list of folders of wheels (*.whl) that uv may install from besides the index, "
            "relative to the spec file",
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "uniqueItems": True,
        },
        "post_build": {
            "description": "a list of shell commands run at the end of the build, as the environment's user "
            "(uid 1000, HOME=/home/jovyan)",
            "type": "array",
            "items": {"type": "string", "minLength": 1},
        },
        "post_build_root": {
            "description": "a list of shell commands run as root (HOME=/root) before post_build",
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
        "target": {
            "description": "the name of a [targets.NAME] table: where this environment runs by default "
            "(--target overrides it)",
            "type": "string",
            "pattern": ENV_NAME_PATTERN,
        },
    },
}

_PATH = {"type": "string", "minLength": 1}
TARGET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": 'one named place to run, such as [targets.gpu-box] with engine = "ssh://me@gpu-box"',
    "additionalProperties": False,
    "properties": {
        "engine": {
            "description": 'the Docker engine\'s address: "ssh://[USER@]HOST[:PORT]", "tcp://HOST:PORT" (with tls) '
            'or "unix:///PATH"',
            "type": "string",
            "pattern": r"^(?:ssh|tcp|unix)://[^\s]+$",
        },
        "context": {
            "description": "the name of a Docker CLI context ('docker context ls') instead of engine",
            "type": "string",
            "minLength": 1,
        },
        "kind": {
            "description": 'the kind of target: "docker" (a Docker engine, the default) or "kubernetes" (a '
            "namespace of a cluster, with context, namespace and registry)",
            "type": "string",
            "enum": ["docker", "kubernetes", "swarm"],
        },
        "tls": {
            "description": "client TLS files of a tcp:// engine run with --tlsverify: { ca, cert, key, verify }",
            "type": "object",
            "additionalProperties": False,
            "properties": {"ca": _PATH, "cert": _PATH, "key": _PATH, "verify": {"type": "boolean"}},
        },
        "workspace": {
            "description": '"sync" (copy the project into a volume on the engine and changed files back; the '
            'default for remote engines), "mount" (bind-mount the local folder: local engines), or an absolute path '
            "on the engine's host where the project already is (a shared folder)",
            "type": "string",
            "pattern": r"^(?:sync|mount|/.*)$",
        },
        "kernel_address": {
            "description": "the address this machine reaches the engine host's published kernel ports at "
            "(tcp:// engines; default: the engine's host name)",
            "type": "string",
            "minLength": 1,
        },
        "description": {"description": "a short human description", "type": "string"},
        # kind = "kubernetes" (docs/scale-out.md); context is then a kubeconfig context.
        "namespace": {
            "description": "kind = kubernetes: the namespace Pods and Jobs are created in (default: default)",
            "type": "string",
            "pattern": r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$",
        },
        "registry": {
            "description": 'the registry of this target, as "HOST[:PORT]/REPOSITORY": build pulls the image from it '
            "instead of building when it is there, push and pull use it (kind = kubernetes or swarm: the nodes "
            "pull images from it too)",
            "type": "string",
            "pattern": REGISTRY_PATTERN,
        },
        "builder": {
            "description": "kind = kubernetes: the name of a [targets.NAME] Docker engine that builds the images "
            "(default: the configured engine)",
            "type": "string",
            "pattern": ENV_NAME_PATTERN,
        },
        "node_selector": {
            "description": "kind = kubernetes: node labels every Pod needs, such as "
            '{ "nvidia.com/gpu.product" = "A100" }',
            "type": "object",
            "additionalProperties": {"type": "string"},
        },
        "tolerations": {
            "description": 'kind = kubernetes: tolerations of every Pod, such as [{ key = "nvidia.com/gpu", '
            'operator = "Exists", effect = "NoSchedule" }]',
            "type": "array",
            "items": {"type": "object"},
        },
        "affinity": {
            "description": "kind = kubernetes: the affinity of every Pod, as the Kubernetes API writes it",
            "type": "object",
        },
        "image_pull_secrets": {
            "description": "kind = kubernetes: names of docker-registry Secrets of the namespace the nodes pull with",
            "type": "array",
            "items": {"type": "string", "pattern": r"^[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?$"},
        },
        "gpu_resource": {
            "description": 'kind = kubernetes: the resource GPUs are requested as (default "nvidia.com/gpu")',
            "type": "string",
            "pattern": r"^[a-z0-9.-]+/[A-Za-z0-9._-]+$",
        },
        # kind = "swarm" (docs/scale-out.md); engine (or context) is then a manager's, registry as above.
        "constraints": {
            "description": 'kind = swarm: placement constraints of every service, such as ["node.labels.gpu==a100"]',
            "type": "array",
            "items": {"type": "string", "pattern": r"^\s*(?:node|engine)\.[A-Za-z0-9_.-]+\s*(?:==|!=)\s*\S.*$"},
        },
        "nodes": {
            "description": "kind = swarm: node host name → its engine's address, such as "
            '{ worker1 = "ssh://worker1" } (to send files into running tasks and interrupt kernels); tcp:// '
            "ones use the target's tls",
            "type": "object",
            "additionalProperties": {"type": "string", "pattern": r"^(?:ssh|tcp|unix)://[^\s]+$"},
        },
        "generic_resource": {
            "description": 'kind = swarm: the generic resource kind the nodes advertise GPUs as (default "NVIDIA-GPU")',
            "type": "string",
            "pattern": r"^[A-Za-z0-9._-]+$",
        },
        "reschedule_on_node_failure": {
            "description": "kind = swarm: a notebook job whose node goes down while it runs is run again from the "
            "start on another node, once (default false: it is reported failed)",
            "type": "boolean",
        },
        "workspace_claim": {
            "description": "kind = kubernetes: a PersistentVolumeClaim of the namespace mounted at /workspace "
            "(default: an empty folder that goes with the Pod)",
            "type": "string",
            "pattern": r"^[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?$",
        },
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
        "registry": {
            "description": 'the team\'s image registry as "HOST[:PORT]/REPOSITORY", such as "registry.example.org/ml"; '
            "build pulls an environment's image from it instead of building, push and pull use it",
            "type": "string",
            "pattern": REGISTRY_PATTERN,
        },
        "targets": {
            "description": "one table per target (a Docker engine to run on), such as [targets.gpu-box]",
            "type": "object",
            "propertyNames": {"pattern": ENV_NAME_PATTERN},
            "additionalProperties": TARGET_SCHEMA,
        },
        "environments": {
            "description": "one table per environment, such as [environments.vision]",
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": ENV_NAME_PATTERN},
            "additionalProperties": ENVIRONMENT_SCHEMA,
        },
    },
}
