"""The ``jupyter_containers`` jupyter-server extension (enabled on install)."""

from __future__ import annotations

from jupyter_server.extension.application import ExtensionApp

from ..errors import ContainersError
from .handlers import handlers
from .metrics import register_metrics
from .service import ContainersService


class ContainersApp(ExtensionApp):
    """Serves the REST API that the JupyterLab sidebar and the notebook widgets use."""

    name = "jupyter_containers"
    load_other_extensions = True
    classes = [ContainersService]

    def initialize_settings(self) -> None:
        assert self.serverapp is not None  # set by jupyter_server before it initializes extensions
        service = ContainersService(parent=self, root_dir=self.serverapp.root_dir)
        self.settings["jupyter_containers_service"] = service
        register_metrics(service)
        from ..kernel.kernelspec import ContainersKernelSpecManager

        if not isinstance(self.serverapp.kernel_spec_manager, ContainersKernelSpecManager) and not (
            service.install_kernelspecs
        ):
            self.log.info(
                "jupyter-containers: container kernels are not in the launcher: the server's kernel spec manager "
                "is %s; set c.ServerApp.kernel_spec_manager_class = "
                "'jupyter_containers.kernel.kernelspec.ContainersKernelSpecManager' (or "
                "c.ContainersService.install_kernelspecs = True to write kernelspec files)",
                type(self.serverapp.kernel_spec_manager).__name__,
            )
        if service.install_kernelspecs:
            try:
                kernels = service.sync_kernelspecs()
                self.log.info("jupyter-containers: container kernels %s", ", ".join(kernels) or "(none)")
            except ContainersError as exc:
                self.log.warning("jupyter-containers: no container kernels installed: %s", exc)
        interrupted = service.jobs.interrupted
        if interrupted:
            self.log.warning("jupyter-containers: %d job(s) were running when the server stopped", len(interrupted))
            for line in service.jobs.recover_interrupted():
                self.log.warning("jupyter-containers: %s", line)
        self.log.info("jupyter-containers: REST API at /jupyter-containers/api/ (root %s)", service.root_dir)

    def initialize_handlers(self) -> None:
        self.handlers.extend(handlers())

    async def stop_extension(self) -> None:
        service = self.settings.get("jupyter_containers_service")
        if service is not None:
            service.close()
