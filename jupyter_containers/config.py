"""One traitlets configuration surface for the CLI, the server extension, the magics and kernels.

``jupyter_containers_config.py`` (or ``.json``) is read from Jupyter's config path, the current directory
and the project's folder (next to the spec file), so ``c.DockerBackend.base_url = "ssh://gpu-box"`` works
the same everywhere. :func:`discover_config` is the one place that decides the order; every front end
gets its configuration through ``ContainersManager.discover``, which calls it.
"""

from __future__ import annotations

from pathlib import Path

from traitlets.config import Config

CONFIG_NAME = "jupyter_containers_config"


def load_config(directory: Path | None = None) -> Config:
    """The config files of Jupyter's config path and ``directory`` (default: the current folder), merged
    lowest priority first."""
    from jupyter_core.paths import jupyter_config_path

    folders = [*reversed(jupyter_config_path()), str(directory or Path.cwd())]
    return _load_folders(folders)


def discover_config(project_dir: Path | None = None, *, base: Config | None = None) -> Config:
    """The configuration of one project, in the one order every front end uses (lowest priority first):

    1. ``base``, the host application's configuration when there is one (the server, the caller of a
       kernel), else Jupyter's config path and the current folder;
    2. the project's own ``jupyter_containers_config.py`` in ``project_dir`` (the spec file's folder).
    """
    config = Config()
    config.merge(base if base is not None else load_config())
    if project_dir is not None:
        config.merge(_load_folders([str(project_dir)]))
    return config


def _load_folders(folders: list[str]) -> Config:
    from traitlets.config.loader import ConfigFileNotFound, JSONFileConfigLoader, PyFileConfigLoader

    config = Config()
    for folder in dict.fromkeys(folders):
        for loader in (JSONFileConfigLoader, PyFileConfigLoader):
            suffix = ".json" if loader is JSONFileConfigLoader else ".py"
            try:
                config.merge(loader(CONFIG_NAME + suffix, path=folder).load_config())
            except ConfigFileNotFound:
                continue
    return config
