"""Shared fixtures: one test project on disk, one manager on the real engine, cleanup of what tests create.

Test images go to their own repository (``jupyter-containers-test/...``) and carry our labels, so the
session removes exactly them at the end and a crashed run is pruned by ``jupyter-containers prune``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .workspace import make_workspace

TEST_REPOSITORY = "jupyter-containers-test/{env}"

PROJECT_SPEC = """
[environments.small]
description = "the shared test environment"
pip = ["six==1.16.0"]
apt = ["less"]
post_build = ["python -c 'import six; print(\\"six\\", six.__version__)'"]
env = { PYTHONHASHSEED = "0" }

[environments.small.resources]
cpus = 1
memory = "256m"
"""


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with containers.toml; tests that need other specs write their own."""
    root = make_workspace(tmp_path_factory.mktemp("project"), PROJECT_SPEC, config=None)
    (root / "data.txt").write_text("hello from the workspace\n")
    return root


@pytest.fixture(scope="session")
def engine_config():
    """Config shared by every manager in the session (test image repository)."""
    from traitlets.config import Config

    config = Config()
    config.Builder.image_repository = TEST_REPOSITORY
    return config


@pytest.fixture(scope="session")
def manager(project: Path, engine_config, request: pytest.FixtureRequest):
    """A ContainersManager on the real engine; fails (never skips) when no engine answers."""
    from jupyter_containers.errors import EngineUnavailableError
    from jupyter_containers.manager import ContainersManager

    mgr = ContainersManager(spec_path=project / "containers.toml", config=engine_config)
    try:
        mgr.engine()
    except EngineUnavailableError as exc:
        pytest.fail(f"the integration tests need a Docker engine; run them with 'bash scripts/test.sh': {exc}")
    return mgr


@pytest.fixture(scope="session")
def small_image(manager):
    """The shared environment, built once per session."""
    return manager.build("small")


@pytest.fixture(scope="session", autouse=True)
def remove_test_images():
    """Whatever the tests built or started (test repository, test labels) is removed at the end."""
    yield
    from jupyter_containers.backends.docker import DockerBackend
    from jupyter_containers.errors import EngineUnavailableError

    try:
        _cleanup(DockerBackend())
    except EngineUnavailableError:
        pass


def _cleanup(backend) -> None:
    """Our test images and test containers, except containers a still-running process owns (a concurrent
    test session on the same engine)."""
    import os

    from jupyter_containers.manager import _orphaned

    for container in backend.list_containers(all=True):
        labels = container["labels"]
        ours = container["image"].startswith("jupyter-containers-test/") or labels.get("io.jupyter.containers.test")
        owner = labels.get("io.jupyter.containers.owner-pid")
        if ours and (owner in (None, str(os.getpid())) or _orphaned(labels)):
            backend.remove_container(container["id"])
    for image in backend.list_images():
        for tag in image["tags"]:
            if tag.startswith("jupyter-containers-test/"):
                backend.remove_image(tag)
