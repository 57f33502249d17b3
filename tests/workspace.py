"""Test workspaces: a folder with a spec and the test image repository, readable by the container user."""

from __future__ import annotations

from pathlib import Path

TEST_CONFIG = "c.Builder.image_repository = 'jupyter-containers-test/{env}'\n"


def make_workspace(root: Path, spec: str, *, config: str | None = TEST_CONFIG) -> Path:
    """Write ``containers.toml`` (and the test config) into ``root``.

    Containers run as uid 1000 when the host user is root, so the folder and its parents (pytest's 0700
    temporary folders) must be readable by it.
    """
    for folder in (root, *root.parents):
        if folder == Path("/tmp"):
            break
        folder.chmod(0o755)
    (root / "containers.toml").write_text(spec)
    if config is not None:
        (root / "jupyter_containers_config.py").write_text(config)
    return root
