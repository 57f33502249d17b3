"""The REST API on targets: ``?target=`` / ``{"target": …}`` on engine, environments, builds and containers.

All real: a ``jupyter server`` subprocess with the extension (tests/server/process.py) whose root is the
remote-target project (tests/integration/remote_project.py), and the session's second engine as its targets
``tls`` (tcp+TLS) and ``ssh`` (the ssh binary); the local engine stays the configured one.
"""

from __future__ import annotations

import json
import time
import urllib.error

import pytest

from ..server.process import Server
from .remote_project import make_remote_project, remote_config, remove_project

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def project(second_engine):
    return make_remote_project(second_engine)


@pytest.fixture(scope="module")
def server(project, tmp_path_factory, second_engine, engine_config):
    from jupyter_containers.manager import ContainersManager

    # The project's jupyter_containers_config.py gives the server the ssh client of the second engine's config.
    running = Server(project, tmp_path_factory.mktemp("remote-server"), "remote")
    manager = ContainersManager(
        spec_path=project / "containers.toml", config=remote_config(engine_config, second_engine)
    )
    yield running, manager
    running.stop()
    manager.for_target("ssh").backend.close()
    remove_project(project, [manager.for_target("tls")])


def error_of(server: Server, method: str, path: str, body: dict | None = None) -> tuple[int, str]:
    with pytest.raises(urllib.error.HTTPError) as caught:
        server.call(method, f"jupyter-containers/api/{path}", body)
    return caught.value.code, json.loads(caught.value.read())["message"]


def test_builds_environments_and_containers_act_on_the_named_target(server, second_engine):
    rest, manager = server
    # an unknown target is a 400 naming it and listing the known ones, on every endpoint that takes one
    for method, path, body in [
        ("GET", "engine?target=gpu", None),
        ("GET", "environments?target=gpu", None),
        ("POST", "environments/remote/build", {"target": "gpu"}),
        ("GET", "containers?target=gpu", None),
        ("DELETE", "containers/0123456789abcdef?target=gpu", None),
        ("GET", "containers/0123456789abcdef/logs?target=gpu", None),
    ]:
        status, message = error_of(rest, method, path, body)
        assert status == 400 and "'gpu'" in message and "ssh, tls" in message, (path, message)
    # the engine of a target is that engine
    engine = rest.request("engine?target=ssh")
    assert engine["reachable"] and engine["version"] == second_engine.api().version()["Version"]
    # a build with a target runs there (over ssh), and the environment is built there, not on the local engine
    build = rest.request("environments/remote/build", {"target": "ssh"})
    assert build["target"] == "ssh"
    deadline = time.monotonic() + 600
    while build["status"] == "building" and time.monotonic() < deadline:
        time.sleep(0.5)
        build = rest.request(f"builds/{build['id']}")
    assert build["status"] == "built", build
    remote_rows = {e["name"]: e for e in rest.request("environments?target=tls")["environments"]}
    assert remote_rows["remote"]["status"] == "built" and remote_rows["remote"]["target"] == "tls"
    local_rows = {e["name"]: e for e in rest.request("environments")["environments"]}
    assert local_rows["remote"]["status"] != "built" and local_rows["remote"]["target"] is None
    # a container there is listed with its target and usage, its logs read and it is stopped through the API
    session = manager.for_target("tls").session("remote")
    try:
        session.execute("print('hello from the remote log', flush=True)")
        rows = rest.request("containers?target=tls")["containers"]
        mine = [r for r in rows if r["id"] == session.container_id]
        assert mine and mine[0]["target"] == "tls" and mine[0]["usage"]["memory_used"] > 0
        assert session.container_id not in [r["id"] for r in rest.request("containers")["containers"]]
        logs = rest.request(f"containers/{session.container_id}/logs?target=ssh&tail=50")["logs"]
        assert isinstance(logs, str)
        status, message = error_of(rest, "DELETE", f"containers/{session.container_id}")
        assert status == 404  # not on the configured engine
        rest.call("DELETE", f"jupyter-containers/api/containers/{session.container_id}?target=ssh")
        ids = [r["id"] for r in rest.request("containers?target=tls")["containers"]]
        assert session.container_id not in ids
    finally:
        session.stop()
