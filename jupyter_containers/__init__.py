"""jupyter-containers: reproducible, portable notebook environments that run in containers."""

__version__ = "0.1.0"


def _jupyter_server_extension_points() -> list[dict]:
    from .server.app import ContainersApp

    return [{"module": "jupyter_containers.server.app", "app": ContainersApp}]


def _jupyter_labextension_paths() -> list[dict]:
    return [{"src": "labextension", "dest": "jupyter-containers"}]


def load_ipython_extension(ip) -> None:
    """``%load_ext jupyter_containers``: the ``%%container`` magics (imported here so the package stays light)."""
    from .magics import load_ipython_extension as load

    load(ip)


def unload_ipython_extension(ip) -> None:
    from .magics import unload_ipython_extension as unload

    unload(ip)
