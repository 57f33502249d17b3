"""The REST API on a real jupyter-server (auth on) and the real Docker engine."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_containers.server.handlers import handlers

pytestmark = pytest.mark.engine

API = "jupyter-containers/api"


async def fetch_json(jp_fetch, *parts, **kwargs):
    response = await jp_fetch(API, *parts, **kwargs)
    return response, json.loads(response.body) if response.body else None


async def error_of(jp_fetch, *parts, **kwargs):
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(API, *parts, **kwargs)
    return info.value.code, json.loads(info.value.response.body)


async def test_every_endpoint_refuses_unauthenticated_requests(jp_serverapp, jp_base_url, http_server_client):
    # given every route the extension serves, called without a token
    for pattern, _ in handlers():
        path = pattern.replace("(?P<name>[a-z0-9][a-z0-9._-]*)", "web")
        path = re.sub(r"\(\?P<\w+>[^)]*\)", "abc123", path)  # every id group (builds, containers, kernels, ...)
        for method in ("GET", "POST", "DELETE"):
            body = b"{}" if method == "POST" else None
            # when
            response = await http_server_client.fetch(
                jp_base_url + path.lstrip("/"), method=method, body=body, raise_error=False
            )
            # then nothing is served: 403 (or 405 for a method the route does not have)
            assert response.code in (403, 405), f"{method} {path} answered {response.code} without authentication"


async def test_environments_list_their_status(jp_fetch):
    _, data = await fetch_json(jp_fetch, "environments")
    by_name = {e["name"]: e for e in data["environments"]}
    assert set(by_name) == {"web", "broken"}
    assert by_name["web"]["status"] in ("never built", "built", "stale")
    assert by_name["web"]["resources"] == {"memory": 256 * 2**20}


async def test_unknown_environment_is_404_with_a_hint(jp_fetch):
    code, body = await error_of(jp_fetch, "environments", "wbe")
    assert code == 404
    assert "did you mean 'web'" in body["message"]


async def test_build_streams_its_log_and_ends_built(jp_fetch):
    # when two clients ask for the same build at once
    first, second = await asyncio.gather(
        fetch_json(jp_fetch, "environments", "web", "build", method="POST", body="{}"),
        fetch_json(jp_fetch, "environments", "web", "build", method="POST", body="{}"),
    )
    (r1, b1), (r2, b2) = first, second
    # then both get 202 and share one build
    assert r1.code == r2.code == 202
    assert b1["id"] == b2["id"]
    assert r1.headers["Location"].endswith(f"/jupyter-containers/api/builds/{b1['id']}")
    # and its log streams as Server-Sent Events until the end
    response = await jp_fetch(
        API, "builds", b1["id"], "log", headers={"Accept": "text/event-stream"}, request_timeout=600
    )
    text = response.body.decode()
    assert "event: build" in text and "event: end" in text
    end = json.loads(text.split("event: end\ndata: ", 1)[1].split("\n", 1)[0])
    assert end["status"] == "built"
    # with a summary for the sidebar's "Last build": steps, cached, seconds, the image's size
    summary = end["summary"]
    assert summary["steps"] >= 3 and 0 <= summary["cached"] <= summary["steps"]
    assert summary["seconds"] > 0 and summary["image_size"] > 10 * 2**20
    # and the environment now shows as built
    _, env = await fetch_json(jp_fetch, "environments", "web")
    assert env["status"] == "built"
    assert env["lock"]["packages"]


async def test_build_log_pages_for_pollers(jp_fetch):
    _, build = await fetch_json(jp_fetch, "environments", "web", "build", method="POST", body="{}")
    _, page = await fetch_json(
        jp_fetch, "builds", build["id"], "log", params={"since": 0, "wait": 10}, request_timeout=60
    )
    assert page["next"] == len(page["events"]) >= 0
    assert page["build"]["id"] == build["id"]


async def test_failed_build_reports_the_step(jp_fetch):
    _, build = await fetch_json(jp_fetch, "environments", "broken", "build", method="POST", body="{}")
    for _ in range(600):
        _, state = await fetch_json(jp_fetch, "builds", build["id"])
        if state["status"] != "building":
            break
        await asyncio.sleep(0.5)
    assert state["status"] == "failed"
    assert "post_build_0" in state["error"].get("step", ""), state["error"]
    assert "the build breaks here" in "\n".join(state["error"]["log_tail"])
    _, envs = await fetch_json(jp_fetch, "environments")
    assert {e["name"]: e["status"] for e in envs["environments"]}["broken"] == "failed"


async def test_unknown_body_fields_are_refused(jp_fetch):
    code, body = await error_of(
        jp_fetch, "environments", "web", "build", method="POST", body=json.dumps({"privileged": True})
    )
    assert code == 400
    assert "unknown field 'privileged'" in body["message"]


async def test_containers_show_usage_and_can_be_stopped(jp_fetch, jp_serverapp):
    # given a container of ours, running
    service = jp_serverapp.web_app.settings["jupyter_containers_service"]
    manager = service.get_manager()
    result = await asyncio.to_thread(manager.build, "web")
    from jupyter_containers.backends.base import RunRequest, labels
    from jupyter_containers.spec.parse import parse_resources

    request = RunRequest(
        image=result.image,
        command=["sleep", "60"],
        resources=parse_resources({"memory": "64m"}),
        labels=labels(env="web", role="run", resources=json.dumps({"memory": 64 * 2**20}), **manager.scope()),
    )
    container = await asyncio.to_thread(manager.backend.create, request)
    try:
        await asyncio.to_thread(container.start)
        # when the containers are listed (until CPU % has its two samples: the listing is kept up to a second)
        for _ in range(50):
            _, data = await fetch_json(jp_fetch, "containers")
            mine = [c for c in data["containers"] if c["id"] == container.id]
            if mine and mine[0]["usage"] and mine[0]["usage"]["cpu_percent"] is not None:
                break
            await asyncio.sleep(0.1)
        # then it is there with its limit and live usage
        assert mine, data
        usage = mine[0]["usage"]
        assert usage["memory_limit"] == 64 * 2**20
        assert usage["memory_used"] > 0
        assert usage["cpu_percent"] is not None
        assert mine[0]["environment"] == "web"
        # and it can be stopped
        response = await jp_fetch(API, "containers", container.id, method="DELETE")
        assert response.code == 204
        _, data = await fetch_json(jp_fetch, "containers")
        assert container.id not in [c["id"] for c in data["containers"]]
    finally:
        manager.backend.remove_container(container.id)


async def test_containers_say_whose_they_are_and_whether_their_image_is_outdated(jp_fetch, jp_serverapp):
    """A container on another image than its environment's current build is `outdated` (the sidebar offers to
    restart a kernel on the new image); a job's container names its job."""
    from jupyter_containers.backends.base import RunRequest, labels

    service = jp_serverapp.web_app.settings["jupyter_containers_service"]
    manager = service.get_manager()
    result = await asyncio.to_thread(manager.build, "web")
    base = manager.environment("web").base or "jupyter-containers/base:bookworm"
    started = []
    try:
        for image, extra in ((result.image, {"job": "0123456789ab"}), (base, {})):
            request = RunRequest(
                image=image, command=["sleep", "60"], labels=labels(env="web", role="run", **extra, **manager.scope())
            )
            container = await asyncio.to_thread(manager.backend.create, request)
            started.append(container.id)
            await asyncio.to_thread(container.start)
        for _ in range(100):
            _, data = await fetch_json(jp_fetch, "containers")
            rows = {c["id"]: c for c in data["containers"]}
            if all(cid in rows for cid in started):
                break
            await asyncio.sleep(0.1)
        current, older = rows[started[0]], rows[started[1]]
        assert (current["outdated"], current["job"]) == (False, "0123456789ab")
        assert (older["outdated"], older["job"]) == (True, None)
    finally:
        for cid in started:
            manager.backend.remove_container(cid)


async def test_the_kept_listing_follows_the_engines_events(jp_fetch, jp_serverapp, monkeypatch):
    """The listing is kept between container events: with the age limit out of the way, a container that
    starts or goes shows in the next listings only because its event invalidated the kept one."""
    from jupyter_containers.backends.base import RunRequest, labels
    from jupyter_containers.server import service as service_module
    from jupyter_containers.spec.parse import parse_resources

    monkeypatch.setattr(service_module, "LIVE_MAX_AGE", 3600.0)
    service = jp_serverapp.web_app.settings["jupyter_containers_service"]
    manager = service.get_manager()
    result = await asyncio.to_thread(manager.build, "web")

    async def listed() -> list[str]:
        _, data = await fetch_json(jp_fetch, "containers")
        return [c["id"] for c in data["containers"]]

    async def until(predicate) -> bool:
        for _ in range(100):
            if predicate(await listed()):
                return True
            await asyncio.sleep(0.05)
        return False

    # given a kept listing (the event stream is connected)
    for _ in range(100):
        if service.engine_watch.generation("container") is not None:
            break
        await asyncio.sleep(0.05)
    before = await listed()
    assert await listed() == before
    # when a container of ours starts, outside the server
    request = RunRequest(
        image=result.image,
        command=["sleep", "60"],
        resources=parse_resources({"memory": "64m"}),
        labels=labels(env="web", role="run", **manager.scope()),
    )
    container = await asyncio.to_thread(manager.backend.create, request)
    try:
        await asyncio.to_thread(container.start)
        # then the next listings show it, and once it is removed they do not
        assert await until(lambda ids: container.id in ids), "a started container never showed"
        await asyncio.to_thread(manager.backend.remove_container, container.id)
        assert await until(lambda ids: container.id not in ids), "a removed container kept showing"
    finally:
        manager.backend.remove_container(container.id)


async def test_a_notebook_whose_container_is_stopped_from_the_sidebar_is_told_so(jp_fetch, jp_serverapp):
    from jupyter_containers.errors import RunError

    # given a %%container session of this workspace, running
    service = jp_serverapp.web_app.settings["jupyter_containers_service"]
    session = await asyncio.to_thread(service.get_manager().session, "web")
    try:
        # when the sidebar stops its container
        response = await jp_fetch(API, "containers", session.container_id, method="DELETE")
        assert response.code == 204
        # then the next cell says that its user stopped it from the sidebar (not "exited with code -1")
        with pytest.raises(RunError, match="stopped by its user, from the JupyterLab sidebar"):
            await asyncio.to_thread(session.execute, "1 + 1")
    finally:
        await asyncio.to_thread(session.stop)


async def test_only_our_containers_can_be_stopped(jp_fetch):
    code, body = await error_of(jp_fetch, "containers", "0123456789ab", method="DELETE")
    assert code == 404
    assert "created by jupyter-containers" in body["message"]


async def test_engine_and_schema(jp_fetch):
    _, engine = await fetch_json(jp_fetch, "engine")
    assert engine["reachable"] is True and engine["gpu"] is False
    _, schema = await fetch_json(jp_fetch, "schema")
    assert schema["title"] == "jupyter-containers spec"


async def test_metrics_include_our_figures(jp_fetch):
    response = await jp_fetch("metrics")
    assert b"jupyter_containers_running" in response.body


async def test_container_kernels_appear_with_their_resources_without_any_file(jp_fetch, jp_serverapp):
    from jupyter_core.paths import jupyter_path

    # the server offers a kernelspec per environment of its workspace: the launcher lists them
    specs = json.loads((await jp_fetch("api", "kernelspecs")).body)["kernelspecs"]
    assert specs["containers-web"]["spec"]["display_name"] == "web (container, 256 MiB)"
    provisioner = specs["containers-web"]["spec"]["metadata"]["kernel_provisioner"]
    assert provisioner["provisioner_name"] == "jupyter-containers"
    assert specs["containers-web"]["resources"]["logo-svg"]
    assert "python3" in specs  # the installed ones are still there
    # and no kernelspec file was written anywhere Jupyter looks (other workspaces' launchers stay clean)
    assert not [p for d in jupyter_path("kernels") if (p := Path(d) / "containers-web").exists()]
    # and a kernel starts from it (its container runs the workspace's environment)
    service = jp_serverapp.web_app.settings["jupyter_containers_service"]
    await asyncio.to_thread(service.get_manager().build, "web")
    response = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": "containers-web"}))
    kernel = json.loads(response.body)
    try:
        manager = service.get_manager()
        containers = [c for c in manager.containers(usage=False) if c["role"] == "kernel"]
        assert [c["environment"] for c in containers] == ["web"]
        assert containers[0]["kernel_id"] == kernel["id"]  # the sidebar finds the kernel's notebook by it
        # and JupyterLab gets the record of the kernel's environment for its notebook's metadata
        record = json.loads((await jp_fetch(API, "kernels", kernel["id"], "record")).body)
        assert record["environment"] == "web" and record["image_id"].startswith("sha256:")
        assert record["resources"]["memory"] == 256 * 2**20 and record["spec"]["pip"] == ["six"]
        code, body = await error_of(jp_fetch, "kernels", "0" * 8 + "-0000-0000-0000-" + "0" * 12, "record")
        assert code == 404
    finally:
        await jp_fetch("api", "kernels", kernel["id"], method="DELETE")
    assert not [c for c in service.get_manager().containers(usage=False) if c["role"] == "kernel"]


async def test_another_workspaces_kernelspec_is_left_alone(jp_fetch, jp_data_dir):
    """A kernelspec another workspace's server (an older version) or `kernelspec install` wrote is neither
    removed nor taken over: this server's own environments come in memory."""
    folder = jp_data_dir / "kernels" / "containers-elsewhere"
    folder.mkdir(parents=True)
    (folder / "kernel.json").write_text(
        json.dumps({"argv": ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"], "display_name": "x"})
    )
    specs = json.loads((await jp_fetch("api", "kernelspecs")).body)["kernelspecs"]
    assert "containers-elsewhere" in specs and "containers-web" in specs
    assert (folder / "kernel.json").exists()


async def test_an_edited_spec_shows_its_environment_as_stale(jp_fetch, jp_root_dir, jp_serverapp):
    # given an environment that is built
    service = jp_serverapp.web_app.settings["jupyter_containers_service"]
    await asyncio.to_thread(service.get_manager().build, "web")
    _, env = await fetch_json(jp_fetch, "environments", "web")
    assert env["status"] == "built"
    # when its spec changes (its image no longer matches)
    spec = jp_root_dir / "containers.toml"
    spec.write_text(spec.read_text().replace('pip = ["six"]', 'pip = ["six", "idna"]'))
    # then it is stale: an image exists, but not for this spec
    _, env = await fetch_json(jp_fetch, "environments", "web")
    assert env["status"] == "stale"
    assert env["image_id"]
