"""``spec/changes`` (the sidebar's watch of the spec) and the refusals of ``environments/NAME/packages``
("Add package…") on a real jupyter-server, with a loopback package index (PyPI's JSON API for ``six``).

The accepted path (the spec edited, comments kept, and the rebuild) is in tests/ui/test_lab_experience.py:
here nothing is built, so no engine is needed.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from tornado.httpclient import HTTPClientError

from ..workspace import make_workspace
from .conftest import SESSION_NONCE, SPEC

API = "jupyter-containers/api"


class _Index(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path != "/pypi/six/json":
            self.send_error(404)
            return
        body = json.dumps({"info": {"name": "six", "version": "1.17.0"}, "releases": {"1.17.0": [{}]}}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def index() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Index)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/pypi"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def jp_server_config(jp_root_dir: Path, index: str):
    make_workspace(jp_root_dir, "# a comment to keep\n" + SPEC.replace("NONCE", SESSION_NONCE), config=None)
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_containers": True}, "allow_unauthenticated_access": False},
        "Builder": {"image_repository": "jupyter-containers-test/{env}"},
        "ContainersService": {"package_index": index},
        "JobManager": {"db": str(jp_root_dir.parent / "jobs.sqlite")},
    }


async def get(jp_fetch, *parts, **kwargs):
    return json.loads((await jp_fetch(API, *parts, **kwargs)).body)


async def error_of(jp_fetch, *parts, **kwargs):
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(API, *parts, **kwargs)
    return info.value.code, json.loads(info.value.response.body)["message"]


async def test_spec_changes_answers_as_soon_as_the_spec_changes(jp_fetch, jp_root_dir):
    spec = jp_root_dir / "containers.toml"
    good = spec.read_text()
    # given the spec's version
    first = await get(jp_fetch, "spec", "changes")
    assert first["error"] is None and first["version"]
    # when nothing changes, a wait for a change ends with the same version
    same = await get(jp_fetch, "spec", "changes", params={"since": first["version"], "wait": "0.5"})
    assert same == first
    # when a client waits and the spec is made invalid meanwhile
    waiting = asyncio.ensure_future(
        get(jp_fetch, "spec", "changes", params={"since": first["version"], "wait": "20"}, request_timeout=25)
    )
    await asyncio.sleep(0.3)
    spec.write_text(good.replace("[environments.web.resources]", "[environments.web.resources\n"))
    broken = await asyncio.wait_for(waiting, 10)  # well before its 20 s
    # then it gets the new version and the spec's error, naming the file
    assert broken["version"] != first["version"]
    assert "containers.toml" in broken["error"]
    # and the environments endpoint says the same (the sidebar shows it instead of the list)
    code, message = await error_of(jp_fetch, "environments")
    assert code == 400 and "containers.toml" in message
    # when it is fixed, the error is gone
    spec.write_text(good)
    fixed = await get(jp_fetch, "spec", "changes", params={"since": broken["version"], "wait": "5"})
    assert fixed["error"] is None and fixed["version"] != broken["version"]


async def test_spec_changes_follows_the_files_the_spec_reads(jp_fetch, jp_root_dir):
    # given an environment that reads a requirements file
    (jp_root_dir / "requirements.txt").write_text("six\n")
    with open(jp_root_dir / "containers.toml", "a") as spec:
        spec.write('\n[environments.reqs]\nrequirements = ["requirements.txt"]\n')
    version = (await get(jp_fetch, "spec", "changes"))["version"]
    # when only that file changes
    (jp_root_dir / "requirements.txt").write_text("six\nattrs\n")
    # then the version changes too
    changed = await get(jp_fetch, "spec", "changes", params={"since": version, "wait": "5"})
    assert changed["version"] != version


@pytest.mark.parametrize(
    ("body", "code", "says"),
    [
        ({"package": "no-such-package"}, 400, "no package named 'no-such-package' on http://127.0.0.1:"),
        ({"package": "six", "version": "1.0"}, 400, "six has no release matching '==1.0'"),
        ({"package": "six", "version": "not a version"}, 400, "version: 'not a version' is not a version"),
        ({"package": "six; rm -rf /"}, 400, "is not a package name"),
        ({"package": 3}, 400, "package: 3 is not a package name"),
        ({"package": "six", "extra": 1}, 400, "unknown field 'extra'"),
    ],
)
async def test_add_package_refuses_what_the_index_lacks(jp_fetch, jp_root_dir, body, code, says):
    spec = jp_root_dir / "containers.toml"
    before = spec.read_text()
    # when "Add package…" asks for something that is not on the index (or not a package at all)
    status, message = await error_of(jp_fetch, "environments", "web", "packages", method="POST", body=json.dumps(body))
    # then it is refused, saying what, and the spec is left as it was
    assert status == code and says in message, message
    assert spec.read_text() == before


async def test_add_package_to_an_unknown_environment_is_404(jp_fetch):
    status, message = await error_of(
        jp_fetch, "environments", "nope", "packages", method="POST", body=json.dumps({"package": "six"})
    )
    assert status == 404 and "nope" in message
