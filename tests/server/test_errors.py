"""Every error class reaches a REST client as its own status code with its message (never a 500).

The server maps our errors to HTTP codes in one place (``handlers.status_for``); the backend maps the
engine's failures to our errors in one place (``backends/docker.py: map_error``). These tests drive each
class through a real request on a real jupyter-server (auth on) and the real Docker engine.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_containers import errors
from jupyter_containers.backends.base import labels
from jupyter_containers.server.handlers import status_for

pytestmark = pytest.mark.engine

API = "jupyter-containers/api"


async def error_of(jp_fetch, *parts, **kwargs):
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(API, *parts, **kwargs)
    return info.value.code, json.loads(info.value.response.body)["message"]


def service_of(jp_serverapp):
    return jp_serverapp.web_app.settings["jupyter_containers_service"]


async def test_an_invalid_request_is_400_naming_the_field(jp_fetch, jp_root_dir):
    # given a notebook to run
    (jp_root_dir / "nb.ipynb").write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    # when a job asks for a memory limit that is not a size
    body = {"notebook": "nb.ipynb", "environment": "web", "resources": {"memory": "2 gigs"}}
    code, message = await error_of(jp_fetch, "jobs", method="POST", body=json.dumps(body))
    # then the request (not the server) is at fault, and the field is named
    assert code == 400
    assert "resources.memory" in message and "'2 gigs'" in message


async def test_an_invalid_spec_is_400_naming_the_file_and_key(jp_fetch, jp_root_dir):
    # given a spec file with a typo in a field name
    spec = jp_root_dir / "containers.toml"
    spec.write_text(spec.read_text() + '\n[environments.typo]\npipp = ["six"]\n')
    # when the environments are listed
    code, message = await error_of(jp_fetch, "environments")
    # then the spec file and the key are named
    assert code == 400
    assert "containers.toml" in message and "pipp" in message


async def test_an_unknown_environment_is_404(jp_fetch):
    code, message = await error_of(jp_fetch, "environments", "nope")
    assert code == 404
    assert "'nope'" in message


async def test_an_unknown_container_is_404(jp_fetch):
    code, message = await error_of(jp_fetch, "containers", "0123456789abcdef", "logs")
    assert code == 404
    assert "created by jupyter-containers" in message


async def test_cancelling_an_ended_job_is_409(jp_fetch, jp_serverapp, jp_root_dir):
    # given a job that already completed (recorded in the server's real job store)
    jobs = service_of(jp_serverapp).jobs
    job = jobs.store.create("nb.ipynb", "web", str(jp_root_dir / "containers.toml"), {}, {})
    jobs.store.update(job.id, status="completed")
    # when it is cancelled
    code, message = await error_of(jp_fetch, "jobs", job.id, method="DELETE")
    # then the state does not allow it, and the message says why
    assert code == 409
    assert "already ended" in message


async def test_an_engine_refusal_is_502_with_the_engines_reason(jp_fetch, jp_serverapp):
    # given a container of ours whose log driver keeps no logs (the engine refuses to read them)
    manager = service_of(jp_serverapp).get_manager()
    backend = manager.backend
    image = await asyncio.to_thread(backend.image_id, "jupyter-containers/base:bookworm")
    assert image, "the test session bootstraps the base image (scripts/setup.sh)"
    created = backend.api.create_container(
        image,
        command=["true"],
        labels=labels(test="true", **manager.ownership()),
        host_config=backend.api.create_host_config(log_config={"Type": "none"}),
    )
    try:
        # when its logs are asked for
        code, message = await error_of(jp_fetch, "containers", created["Id"], "logs")
        # then the engine refused, and its own words are in the message
        assert code == 502
        assert "the Docker engine refused" in message
    finally:
        backend.remove_container(created["Id"])


def test_every_error_class_has_a_status_other_than_500():
    # 500 is left for our own bugs: every class we raise on purpose has its own code
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.ContainersError)]
    for cls in classes:
        if cls is errors.ContainersError:
            continue
        instance = cls.__new__(cls)
        assert status_for(instance) != 500, cls.__name__
