"""A jupyter_client kernel provisioner that runs the kernel in an environment's container.

Registered under the entry point group ``jupyter_client.kernel_provisioners`` as ``jupyter-containers``,
so a kernelspec whose metadata names it works unchanged in JupyterLab, ``jupyter console``, nbclient and
papermill. ``jupyter-containers kernelspec install ENV`` writes such kernelspecs.

The kernel starts where a local one would: in the client's working folder (nbclient's ``cwd`` or
``resources["metadata"]["path"]``, else the process's current folder, which papermill's ``--cwd`` sets),
mapped to the matching folder under ``/workspace``. A folder outside the workspace cannot be seen from the
container: the kernel then starts in ``/workspace`` and a warning says so.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning import KernelProvisionerBase
from traitlets import Bool, Dict, Unicode

from .container import CONNECTION_FILE, ContainerKernel

PROVISIONER_NAME = "jupyter-containers"


class ContainerProvisioner(KernelProvisionerBase):
    """Starts, signals and removes one container per kernel (a restart is a fresh container)."""

    environment = Unicode(config=True, help="Environment name in the spec file.")
    spec_file = Unicode(config=True, help="Absolute path of the spec file (containers.toml or pyproject.toml).")
    resources = Dict(config=True, help="Resource overrides in spec units, e.g. {'memory': '2g', 'cpus': 1}.")
    locked = Bool(False, config=True, help="Build from containers.lock when the image has to be built.")
    role = Unicode("kernel", config=True, help="The container's role label: 'kernel', or 'session' for %%container.")
    extra_labels = Dict(config=True, help="More container labels, without the io.jupyter.containers. prefix.")
    target = Unicode(
        None, allow_none=True, config=True, help="The [targets.NAME] to run on (unset: the environment's own)."
    )

    kernel: ContainerKernel | None = None
    _stopping = False

    def _manager(self) -> Any:
        from ..manager import ContainersManager

        # The host application's config (server, nbclient caller) first, the project's own file on top.
        overrides: dict[str, Any] = {"target": self.target} if self.target else {}
        return ContainersManager.discover(Path(self.spec_file), parent=self, **overrides).for_environment(
            self.environment
        )

    def _resources(self, manager: Any) -> Any:
        from ..spec.parse import parse_resources

        override = parse_resources(self.resources, key="kernel_provisioner.config.resources")
        return manager.resources(self.environment, override)

    @property
    def has_process(self) -> bool:
        return self.kernel is not None and self.kernel.container_id is not None

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        km: Any = self.parent  # the KernelManager this provisioner serves
        # (manager, build result) of a caller that has just checked the image with the same spec file, target
        # and config (execute): used once, so a restart checks the image again.
        prepared = getattr(km, "prepared", None)
        if prepared is not None:
            km.prepared = None
        if self.kernel is None:
            manager = prepared[0].for_environment(self.environment) if prepared else self._manager()
            self.kernel = ContainerKernel(
                manager,
                self.environment,
                self._resources(manager),
                role=self.role,
                # The kernel id too: the sidebar names the notebook that would lose its state when stopped.
                extra_labels={**self.extra_labels, **({"kernel-id": self.kernel_id} if self.kernel_id else {})},
                locked=self.locked,
            )
        try:
            if prepared and prepared[1].image and self.kernel.image is None:
                self.kernel.image, self.kernel.image_id = prepared[1].image, prepared[1].image_id
            else:
                await asyncio.to_thread(self.kernel.build)
            if self.kernel.remote:
                # TCP with CurveZMQ (docs/remote.md); the key pair is kept across restarts like the HMAC key.
                import zmq

                km.transport = "tcp"
                km.ip = "127.0.0.1"  # replaced by where the published ports are reached, once known
                if km.curve_publickey is None or km.curve_secretkey is None:
                    km.curve_publickey, km.curve_secretkey = zmq.curve_keypair()
            else:
                km.transport = "ipc"
                km.ip = self.kernel.host_ip
            km.write_connection_file()
            self.connection_info = km.get_connection_info()
            self.kernel.write_connection_file(dict(self.connection_info))
        except BaseException:
            # A failed build must not leave the socket folder (and, once written, the key) behind.
            await asyncio.to_thread(self.kernel.remove)
            self.kernel = None
            raise
        argv = [arg.replace("{connection_file}", CONNECTION_FILE) for arg in self.kernel_spec.argv]
        kwargs["cmd"] = argv + list(kwargs.pop("extra_arguments", []))
        # The host's environment must not leak into the container: only the kernelspec's own env goes in.
        kwargs.pop("env", None)
        kwargs["env"] = dict(self.kernel_spec.env or {})
        return kwargs

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        assert self.kernel is not None
        # Without a cwd a local kernel inherits the client's current folder (papermill's --cwd chdirs there).
        cwd = kwargs.get("cwd") or os.getcwd()
        self._check_cwd(cwd)
        await asyncio.to_thread(self.kernel.start, cmd, cwd=cwd, env=kwargs.get("env"))
        if self.kernel.remote:
            info: dict[str, Any] = {**self.connection_info, **self.kernel.client_info}
            self.connection_info = info  # type: ignore[assignment]  # a KernelConnectionInfo with the reached ports
        return self.connection_info

    def _check_cwd(self, cwd: str) -> None:
        assert self.kernel is not None
        workspace = self.kernel.manager.workspace_dir()
        path = Path(cwd).resolve()
        if path != workspace and workspace not in path.parents:
            self.log.warning(
                "container kernel: the working folder %s is outside the workspace %s, the only folder the "
                "container sees: the kernel starts in /workspace; run from (or pass a cwd) inside the workspace",
                path,
                workspace,
            )

    async def poll(self) -> int | None:
        if self.kernel is None:
            return 0
        return await asyncio.to_thread(self.kernel.poll)

    async def wait(self) -> int | None:
        if self.kernel is None:
            return None
        return await asyncio.to_thread(self.kernel.wait)

    async def send_signal(self, signum: int) -> None:
        if self.kernel is not None:
            await asyncio.to_thread(self.kernel.signal, signum)

    async def kill(self, restart: bool = False) -> None:
        if self.kernel is not None:
            await self._report_death()
            self._stopping = True
            await asyncio.to_thread(self.kernel.kill)

    async def terminate(self, restart: bool = False) -> None:
        self._stopping = True
        await self.send_signal(signal.SIGTERM)

    async def shutdown_requested(self, restart: bool = False) -> None:
        self._stopping = True

    async def cleanup(self, restart: bool = False) -> None:
        if self.kernel is not None:
            await self._report_death()
            await asyncio.to_thread(self.kernel.remove, keep_socket_dir=restart)
        self._stopping = False

    async def _report_death(self) -> None:
        """Log why the kernel died, unless we stopped it ourselves (then its exit code says nothing)."""
        if self._stopping or self.kernel is None:
            return
        reason = await asyncio.to_thread(self.kernel.death_reason)
        if reason and "code 0" not in reason:
            self.log.warning("container kernel %s: %s", self.kernel_id, reason)

    def get_shutdown_wait_time(self, recommended: float = 5.0) -> float:
        return max(recommended, 10.0)

    def get_stable_start_time(self, recommended: float = 10.0) -> float:
        return max(recommended, 30.0)

    async def get_provisioner_info(self) -> dict[str, Any]:
        info = await super().get_provisioner_info()
        info.update(
            {
                "environment": self.environment,
                "spec_file": self.spec_file,
                "resources": self.resources,
                "container_id": self.kernel.container_id if self.kernel is not None else None,
            }
        )
        return info
