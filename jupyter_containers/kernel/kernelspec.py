"""Kernelspecs for container kernels: installed ones (launcher, console, nbclient, papermill) and
in-memory ones for the magics and ``execute``, which need no installation step."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import AsyncKernelManager, KernelManager

from ..spec.model import Resources
from .container import DEFAULT_ARGV
from .provisioner import PROVISIONER_NAME


def kernel_spec_dict(
    environment: str,
    spec_file: Path,
    resources: dict[str, Any] | None = None,
    *,
    display_name: str | None = None,
    role: str | None = None,
    extra_labels: dict[str, str] | None = None,
    target: str | None = None,
) -> dict[str, Any]:
    """The kernel.json of a container kernel for ``environment`` with resource overrides in spec units.

    ``role`` and ``extra_labels`` label the container (``%%container`` sessions use ``role="session"``).
    """
    resources = {k: v for k, v in (resources or {}).items() if v is not None}
    if display_name is None:
        from ..spec.parse import parse_resources

        described = parse_resources(resources).describe() if resources else ""
        display_name = f"{environment} (container{', ' + described if described else ''})"
    config: dict[str, Any] = {
        "environment": environment,
        "spec_file": str(Path(spec_file).resolve()),
        "resources": resources,
    }
    if role is not None:
        config["role"] = role
    if extra_labels:
        config["extra_labels"] = dict(extra_labels)
    if target:
        config["target"] = target
    return {
        "argv": list(DEFAULT_ARGV),
        "display_name": display_name,
        "language": "python",
        "interrupt_mode": "signal",
        "env": {},
        "metadata": {
            "debugger": False,
            "kernel_provisioner": {
                "provisioner_name": PROVISIONER_NAME,
                "config": config,
            },
        },
    }


def kernel_name(environment: str, resources: dict[str, Any] | None = None) -> str:
    """``containers-vision`` or ``containers-vision-memory-4g-gpus-1``: stable, valid kernelspec names."""
    parts = [f"containers-{environment}"]
    for key, value in sorted((resources or {}).items()):
        if value is not None:
            parts.append(f"{key}-{value}")
    return re.sub(r"[^a-z0-9._-]+", "-", "-".join(parts).lower()).strip("-")[:120]


def install_kernel_spec(
    environment: str,
    spec_file: Path,
    resources: dict[str, Any] | None = None,
    *,
    name: str | None = None,
    display_name: str | None = None,
    user: bool = False,
    prefix: str | None = None,
    kernel_spec_manager: KernelSpecManager | None = None,
    target: str | None = None,
) -> str:
    """Install a kernelspec (like ``ipykernel install``) with ``kernel_spec_manager`` (built with the
    caller's ``parent=``, so it reads the same config); returns its folder."""
    name = name or kernel_name(environment, resources)
    spec = kernel_spec_dict(environment, spec_file, resources, display_name=display_name, target=target)
    ksm = kernel_spec_manager if kernel_spec_manager is not None else KernelSpecManager()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "kernel.json").write_text(json.dumps(spec, indent=1))
        return ksm.install_kernel_spec(tmp, kernel_name=name, user=user, prefix=prefix)


class _InMemorySpec:
    """Gives a KernelManager a container kernelspec without installing it anywhere."""

    _kernel_spec: KernelSpec | None
    #: ``(ContainersManager, BuildResult)`` of a caller that has just checked the image (``execute``): the
    #: provisioner uses it for the first start instead of discovering the spec file and checking it again.
    prepared: tuple[Any, Any] | None = None

    def __init__(
        self,
        *args: Any,
        environment: str,
        spec_file: Path,
        resources: Resources | dict | None = None,
        role: str | None = None,
        extra_labels: dict[str, str] | None = None,
        target: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        raw = resources.to_dict() if isinstance(resources, Resources) else dict(resources or {})
        # kernel_name first: setting it resets _kernel_spec.
        self.kernel_name = kernel_name(environment, raw)
        self._kernel_spec = KernelSpec(
            **kernel_spec_dict(environment, spec_file, raw, role=role, extra_labels=extra_labels, target=target)
        )


class ContainerKernelManager(_InMemorySpec, KernelManager):
    """A blocking KernelManager whose kernel runs in ``environment``'s container (used by the magics)."""


class AsyncContainerKernelManager(_InMemorySpec, AsyncKernelManager):
    """The asyncio variant (used by nbclient for ``execute``)."""


#: The resource folder of the in-memory kernelspecs (their logo): part of the package, nothing is written.
RESOURCES = str(Path(__file__).parent / "resources")


class ContainersKernelSpecManager(KernelSpecManager):
    """Jupyter's kernelspecs plus one per environment of *this* server's workspace, in memory.

    Installed into a shared folder, the kernelspecs of every workspace's server appeared in every launcher
    (and two workspaces with an environment of the same name overwrote each other's). This manager adds the
    server's own environments as ``containers-ENV`` without writing any file, and leaves every installed
    kernelspec -- including ones another workspace or ``jupyter-containers kernelspec install`` wrote -- as
    it is. Enabled by the extension's config (``c.ServerApp.kernel_spec_manager_class``); the environments
    come from the server's ``ContainersService``, so they follow edits of the spec file.
    """

    def _ours(self) -> dict[str, dict[str, Any]]:
        web_app = getattr(self.parent, "web_app", None)
        service = web_app.settings.get("jupyter_containers_service") if web_app is not None else None
        if service is None:
            return {}
        from ..errors import ContainersError

        try:
            return service.kernel_specs()
        except ContainersError as exc:  # a broken spec file: the launcher still shows everything else
            self.log.warning("jupyter-containers: no container kernels: %s", exc)
            return {}

    def find_kernel_specs(self) -> dict[str, str]:
        specs = super().find_kernel_specs()
        specs.update(dict.fromkeys(self._ours(), RESOURCES))
        return specs

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        spec = self._ours().get(kernel_name)
        if spec is not None:
            return KernelSpec(resource_dir=RESOURCES, **spec)
        return super().get_kernel_spec(kernel_name)

    def get_all_specs(self) -> dict[str, Any]:
        ours = self._ours()
        out: dict[str, Any] = {}
        for name in KernelSpecManager.find_kernel_specs(self):
            if name in ours:
                continue
            try:
                installed = KernelSpecManager.get_kernel_spec(self, name)
            except Exception as exc:  # noqa: BLE001 - as jupyter_client does: one broken kernelspec is skipped
                self.log.warning("Error loading kernelspec %r: %s", name, exc)
                continue
            out[name] = {"resource_dir": installed.resource_dir, "spec": installed.to_dict()}
        for name, spec in ours.items():
            out[name] = {"resource_dir": RESOURCES, "spec": KernelSpec(resource_dir=RESOURCES, **spec).to_dict()}
        return out
