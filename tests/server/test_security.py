"""What one user's server may do on a shared engine, and what a request may ask of it.

Real jupyter-server (auth on), real engine. Design in docs/security.md: containers carry labels naming
the user (uid) and workspace that created them, set by us at creation and never taken from a request;
every listing, log and stop is scoped to them, and every resource a request asks for is checked against
this server's bounds after unit conversion.
"""

from __future__ import annotations

import asyncio
import json
import os

import nbformat
import pytest
from tornado.httpclient import HTTPClientError

from jupyter_containers.backends.base import RunRequest, labels

pytestmark = pytest.mark.engine

API = "jupyter-containers/api"


def service_of(jp_serverapp):
    return jp_serverapp.web_app.settings["jupyter_containers_service"]


async def error_of(jp_fetch, *parts, **kwargs) -> tuple[int, str]:
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(API, *parts, **kwargs)
    return info.value.code, json.loads(info.value.response.body)["message"]


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ({"memory": 0}, "below the smallest allowed"),
        ({"memory": "1k"}, "below the smallest allowed"),
        ({"cpus": 1e-10}, "below the smallest allowed"),
        ({"memory": "256m", "memory_swap": -1}, "unlimited swap"),
        ({"memory": "256m", "memory_swap": "1p"}, "over this server's maximum"),
        ({"memory": "256m", "memory_swap": "128m"}, "less than memory"),
        ({"memory_swap": "1g"}, "needs memory too"),
        ({"pids": 0}, "resources.pids"),
        ({"pids": 8}, "below the smallest allowed"),
        ({"timeout": 0}, "resources.timeout"),
        ({"timeout": "0.5s"}, "below the smallest allowed"),
        ({"gpus": -1}, "gpus"),
    ],
)
async def test_no_request_gets_around_the_bounds(jp_fetch, jp_root_dir, resources, message):
    # given a notebook
    nbformat.write(nbformat.v4.new_notebook(), jp_root_dir / "nb.ipynb")
    # when a job asks for zero, negative, unlimited or out-of-bounds resources
    body = {"notebook": "nb.ipynb", "environment": "web", "resources": resources}
    code, text = await error_of(jp_fetch, "jobs", method="POST", body=json.dumps(body))
    # then it is refused, naming the field
    assert code == 400 and message in text, text


async def test_a_jobs_container_gets_exactly_the_limits_and_defences(jp_fetch, jp_root_dir, jp_serverapp):
    # given a notebook that runs long enough to be inspected
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import time; time.sleep(20)")]
    nbformat.write(nb, jp_root_dir / "slow.ipynb")
    body = {
        "notebook": "slow.ipynb",
        "environment": "web",
        "resources": {"cpus": 0.5, "memory": "200m", "pids": 64, "network": "none"},
    }
    response = await jp_fetch(API, "jobs", method="POST", body=json.dumps(body))
    job = json.loads(response.body)
    manager = service_of(jp_serverapp).get_manager()
    try:
        # when its kernel container runs
        container = None
        for _ in range(600):
            kernels = [c for c in await asyncio.to_thread(manager.containers, usage=False) if c["role"] == "kernel"]
            if kernels:
                container = kernels[0]
                break
            await asyncio.sleep(0.25)
        assert container is not None, "the job's kernel container never appeared"
        inspected = manager.backend.api.inspect_container(container["id"])
        host = inspected["HostConfig"]
        # then the engine holds exactly the limits asked for (after unit conversion), swap included
        assert host["NanoCpus"] == 500_000_000
        assert host["Memory"] == 200 * 2**20
        assert host["MemorySwap"] == 200 * 2**20
        assert host["PidsLimit"] == 64
        assert host["NetworkMode"] == "none"
        # and none of the defences is missing
        assert host["Privileged"] is False
        assert host["CapDrop"] == ["ALL"]
        assert "no-new-privileges" in host["SecurityOpt"]
        assert not host.get("Devices") and not host.get("DeviceRequests")
        assert inspected["Config"]["User"] not in ("", "0", "root", "0:0")
        # and it is labelled as this user's, in this workspace
        container_labels = inspected["Config"]["Labels"]
        assert container_labels["io.jupyter.containers.owner-uid"] == str(os.getuid())
        assert container_labels["io.jupyter.containers.workspace"] == str(manager.workspace_dir())
    finally:
        await jp_fetch(API, "jobs", job["id"], method="DELETE", raise_error=False)


@pytest.fixture
def someone_elses_containers(jp_serverapp):
    """Containers of ours (managed label) that this server did not create: one started by the same user's
    CLI in another folder, one by another user in this very folder."""
    manager = service_of(jp_serverapp).get_manager()
    image = manager.backend.image_id("jupyter-containers/base:bookworm")
    created = []
    for scope in (
        {"owner_uid": str(os.getuid()), "workspace": "/home/other/project"},
        {"owner_uid": "4242", "workspace": str(manager.workspace_dir())},
    ):
        request = RunRequest(image=image, command=["sleep", "60"], labels=labels(role="run", test="true", **scope))
        container = manager.backend.create(request)
        container.start()
        created.append(container)
    yield manager, [c.id for c in created]
    for container in created:
        container.remove()


async def test_other_workspaces_and_users_containers_are_invisible(jp_fetch, someone_elses_containers):
    manager, ids = someone_elses_containers
    # when this server lists containers
    listed = json.loads((await jp_fetch(API, "containers")).body)["containers"]
    # then neither is there
    assert not {c["id"] for c in listed} & set(ids)
    for container_id in ids:
        # and their logs and stop are 404, exactly as for a container that does not exist
        code, message = await error_of(jp_fetch, "containers", container_id, "logs")
        assert code == 404 and "created by jupyter-containers" in message
        code, _ = await error_of(jp_fetch, "containers", container_id, method="DELETE")
        assert code == 404
        # and the container still runs
        assert manager.backend.container(container_id).state().running


async def test_request_labels_cannot_be_chosen(jp_fetch, jp_root_dir):
    # a job body has no way to name labels (or anything else the engine stores)
    nbformat.write(nbformat.v4.new_notebook(), jp_root_dir / "nb.ipynb")
    body = {"notebook": "nb.ipynb", "environment": "web", "labels": {"io.jupyter.containers.workspace": "/"}}
    code, message = await error_of(jp_fetch, "jobs", method="POST", body=json.dumps(body))
    assert code == 400 and "unknown field 'labels'" in message
