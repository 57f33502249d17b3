"""Integration fixtures shared by the tests in this folder (engine-level, no manager needed)."""

from __future__ import annotations

import pytest

DEFAULT_BASE = "python:3.11-slim"
OFFLINE_BASE = "jupyter-containers/base:bookworm"


@pytest.fixture(scope="session")
def base_image() -> str:
    """The default base on this engine: pulled where a registry answers, else bootstrapped (once per machine)."""
    from jupyter_containers.backends.docker import DockerBackend
    from jupyter_containers.provision.base_image import ensure_base_image

    return ensure_base_image(DEFAULT_BASE, backend=DockerBackend(), offline_tag=OFFLINE_BASE)
