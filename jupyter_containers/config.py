"""One traitlets configuration surface for the CLI, the server extension and the magics.

``jupyter_containers_config.py`` (or ``.json``) is read from Jupyter's config path and then the current
directory, so ``c.DockerBackend.base_url = "ssh://gpu-box"`` works the same everywhere.
"""

from __future__ import annotations

from pathlib import Path

from traitlets.config import Config

CONFIG_NAME = "jupyter_containers_config"


def load_config(directory: Path | None = None) -> Config:
    from jupyter_core.paths import jupyter_config_path
    from traitlets.config.loader import ConfigFileNotFound, JSONFileConfigLoader, PyFileConfigLoader

    config = Config()
    # jupyter_config_path() lists the highest priority first; merge lowest first so higher ones win.
    folders = [*reversed(jupyter_config_path()), str(directory or Path.cwd())]
    for folder in dict.fromkeys(folders):
        for loader in (JSONFileConfigLoader, PyFileConfigLoader):
            suffix = ".json" if loader is JSONFileConfigLoader else ".py"
            try:
                config.merge(loader(CONFIG_NAME + suffix, path=folder).load_config())
            except ConfigFileNotFound:
                continue
    return config
