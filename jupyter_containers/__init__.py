"""jupyter-containers: reproducible, portable notebook environments that run in containers."""

__version__ = "0.1.0"


def _jupyter_server_extension_points() -> list[dict]:
    from .server.app import ContainersApp

    return [{"module": "jupyter_containers.server.app", "app": ContainersApp}]


def _jupyter_labextension_paths() -> list[dict]:
    return [{"src": "labextension", "dest": "jupyter-containers"}]
