"""The layering the design promises, checked on the real modules (not on a picture of them).

- The core (spec, images, backends, manager, front-end helpers, the container kernel) imports neither
  tornado nor jupyter_server: it runs in kernels, CLIs and jobs, not only in the server.
- Only the Docker-engine backend imports docker-py: everything else reaches an engine through
  ``ContainerBackend``.
- No front end (CLI, magics, widgets, server) imports another.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import jupyter_containers

PACKAGE = Path(jupyter_containers.__file__).parent

CORE = [
    "jupyter_containers.spec.parse",
    "jupyter_containers.spec.importers",
    "jupyter_containers.spec.writer",
    "jupyter_containers.spec.capture",
    "jupyter_containers.images.builder",
    "jupyter_containers.images.dockerfile",
    "jupyter_containers.images.lock",
    "jupyter_containers.backends.base",
    "jupyter_containers.backends.docker",
    "jupyter_containers.manager",
    "jupyter_containers.frontend",
    "jupyter_containers.kernel.container",
    "jupyter_containers.share.bundle",
    "jupyter_containers.share.registry",
    "jupyter_containers.share.binder",
    "jupyter_containers.share.notebook",
]
# jupyter_client (and so the kernel provisioner, sessions and jobs) imports tornado itself, through pyzmq's
# ZMQStream; these must still never bring in the server.
NEEDS_JUPYTER_CLIENT = [
    "jupyter_containers.kernel.provisioner",
    "jupyter_containers.kernel.kernelspec",
    "jupyter_containers.kernel.pool",
    "jupyter_containers.jobs.runner",
    "jupyter_containers.cli",
    "jupyter_containers.share.reproduce",
]
# The notebook front end is the magics plus the widgets they show (``%container ui``).
FRONT_ENDS = {"cli": {"cli"}, "notebook": {"magics", "widgets"}, "server": {"server"}}


def imported_after(modules: list[str]) -> set[str]:
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return set(json.loads(out))


def test_the_core_imports_neither_tornado_nor_jupyter_server():
    # when every core module is imported in a fresh interpreter
    loaded = imported_after(CORE)
    # then neither the web framework nor the server came along
    assert not {"tornado", "jupyter_server"} & loaded


def test_kernels_and_jobs_do_not_import_the_server():
    assert "jupyter_server" not in imported_after(NEEDS_JUPYTER_CLIENT)


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the module's package
                package = path.relative_to(PACKAGE.parent).with_suffix("").parts[: -node.level]
                base = ".".join([*package, base] if base else package)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE), imports_of(path)


def test_only_the_docker_backend_imports_docker():
    offenders = [
        str(rel)
        for rel, names in modules()
        if not rel.name.startswith("docker") and any(n == "docker" or n.startswith("docker.") for n in names)
    ]
    assert offenders == []


def test_only_the_server_imports_tornado_and_jupyter_server():
    offenders = [
        str(rel)
        for rel, names in modules()
        if rel.parts[0] != "server" and any(n.split(".")[0] in ("tornado", "jupyter_server") for n in names)
    ]
    assert offenders == []


def test_no_front_end_imports_another():
    offenders = []
    for rel, names in modules():
        top = rel.parts[0].removesuffix(".py")
        own = next((name for name, parts in FRONT_ENDS.items() if top in parts), None)
        if own is None:
            continue
        others = set().union(*(parts for name, parts in FRONT_ENDS.items() if name != own))
        for other in sorted(others):
            if any(n == f"jupyter_containers.{other}" or n.startswith(f"jupyter_containers.{other}.") for n in names):
                offenders.append(f"{rel} imports {other}")
    assert offenders == []
