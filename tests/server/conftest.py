"""A real jupyter-server with the extension enabled and authentication on, in a workspace with a spec."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from ..workspace import make_workspace

SESSION_NONCE = uuid.uuid4().hex[:12]

SPEC = """
[environments.web]
description = "served by the REST API"
pip = ["six"]
env = { SERVER_TEST = "NONCE" }

[environments.web.resources]
memory = "256m"

[environments.broken]
post_build = ["echo the build breaks here >&2; exit 4"]

# An engine address where nothing listens (port 9, discard): a target that is always unreachable.
[targets.nowhere]
engine = "tcp://127.0.0.1:9"
"""


@pytest.fixture
def jp_server_config(jp_root_dir: Path):
    # A nonce per session: the first build of "web" in a session is a real build with a log to stream.
    make_workspace(jp_root_dir, SPEC.replace("NONCE", SESSION_NONCE), config=None)
    return {
        "ServerApp": {
            "jpserver_extensions": {"jupyter_containers": True},
            "allow_unauthenticated_access": False,
            # As the extension's own config (jupyter-config/) sets it.
            "kernel_spec_manager_class": "jupyter_containers.kernel.kernelspec.ContainersKernelSpecManager",
        },
        "Builder": {"image_repository": "jupyter-containers-test/{env}"},
        "JobManager": {"db": str(jp_root_dir.parent / "jobs.sqlite")},
    }
