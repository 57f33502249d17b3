"""Sharing through the REST API on a real jupyter-server (auth on), the real engine and a real registry:
export, import, push, pull, binder export and reproduce as background operations, with the API's rules."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import nbformat
import pytest
from tornado.httpclient import HTTPClientError

pytestmark = pytest.mark.engine

API = "jupyter-containers/api"


async def post(jp_fetch, *parts, body: dict):
    response = await jp_fetch(API, *parts, method="POST", body=json.dumps(body))
    assert response.code == 202, response.body
    return json.loads(response.body)


async def error_of(jp_fetch, *parts, body: dict):
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(API, *parts, method="POST", body=json.dumps(body))
    return info.value.code, json.loads(info.value.response.body)["message"]


async def finished(jp_fetch, op: dict, seconds: float = 600) -> dict:
    for _ in range(int(seconds * 4)):
        data = json.loads((await jp_fetch(API, "operations", op["id"])).body)
        if data["status"] != "running":
            return data
        await asyncio.sleep(0.25)
    raise AssertionError(f"operation {op['id']} still running")


async def built(jp_fetch, name: str = "web") -> None:
    response = await jp_fetch(API, "environments", name, "build", method="POST", body="{}")
    build = json.loads(response.body)
    for _ in range(2400):
        data = json.loads((await jp_fetch(API, "builds", build["id"])).body)
        if data["status"] != "building":
            assert data["status"] == "built", data
            return
        await asyncio.sleep(0.25)


async def test_export_then_import_a_bundle_inside_the_server_root(jp_fetch, jp_root_dir):
    # given the environment built once (a bundle needs its lock)
    await built(jp_fetch)
    # when it is exported from the sidebar
    op = await finished(jp_fetch, await post(jp_fetch, "environments", "web", "export", body={"path": "web.tar.gz"}))
    # then the bundle is in the server root
    assert op["status"] == "completed", op
    assert op["result"]["path"] == "web.tar.gz" and (jp_root_dir / "web.tar.gz").is_file()
    # when a colleague's folder imports it
    (jp_root_dir / "colleague").mkdir()
    body = {"path": "web.tar.gz", "into": "colleague"}
    op = await finished(jp_fetch, await post(jp_fetch, "bundles", "import", body=body))
    # then it holds the environment and its lock
    assert op["status"] == "completed", op
    assert op["result"]["spec_file"] == "colleague/containers.toml"
    assert "[environments.web]" in (jp_root_dir / "colleague" / "containers.toml").read_text()
    assert (jp_root_dir / "colleague" / "containers.lock").is_file()
    # and into a folder with a different 'web' it is refused (a failed operation, with the 409 it would be)
    (jp_root_dir / "other").mkdir()
    (jp_root_dir / "other" / "containers.toml").write_text('[environments.web]\npip = ["attrs"]\n')
    op = await finished(jp_fetch, await post(jp_fetch, "bundles", "import", body={**body, "into": "other"}))
    assert op["status"] == "failed" and op["error"]["status"] == 409 and "web" in op["error"]["message"]
    assert "attrs" in (jp_root_dir / "other" / "containers.toml").read_text()


@pytest.mark.parametrize(
    ("parts", "body", "status", "needle"),
    [
        (("environments", "web", "export"), {"path": "../web.tar.gz"}, 400, "outside the server root"),
        (("environments", "web", "export"), {"path": "web.zip"}, 400, "must end with .tar.gz"),
        (("environments", "web", "export"), {"with_image": "yes"}, 400, "with_image"),
        (("environments", "nope", "export"), {}, 404, "nope"),
        (("bundles", "import"), {"path": "/etc/x.tar.gz"}, 400, "outside the server root"),
        (("bundles", "import"), {"path": "missing.tar.gz"}, 404, "upload it first"),
        (("bundles", "import"), {"path": "b.tar.gz", "into": "../.."}, 400, "outside the server root"),
        (("environments", "web", "push"), {"registry": "https://user:secret@host/x"}, 400, "HOST[:PORT]/REPO"),
        (("environments", "web", "pull"), {"registry": "nothing"}, 400, "not a registry repository"),
        (("environments", "web", "binder"), {"path": "../binder"}, 400, "outside the server root"),
        (("environments", "web", "binder"), {"repo": "no-slash"}, 400, "repo"),
        (("notebooks", "reproduce"), {"path": "../x.ipynb"}, 400, "outside the server root"),
        (("notebooks", "reproduce"), {"path": "missing.ipynb"}, 404, "missing.ipynb"),
        (("notebooks", "reproduce"), {"path": "r.ipynb", "rtol": -1}, 400, "rtol"),
        (("notebooks", "reproduce"), {"path": "r.ipynb", "sanitize": ["../s.cfg"]}, 400, "outside the server root"),
        (("notebooks", "reproduce"), {"path": "r.ipynb", "token": "x"}, 400, "unknown field 'token'"),
    ],
)
async def test_bad_requests_are_refused_before_anything_starts(jp_fetch, jp_root_dir, parts, body, status, needle):
    (jp_root_dir / "b.tar.gz").write_bytes(b"")
    nbformat.write(nbformat.v4.new_notebook(), str(jp_root_dir / "r.ipynb"))
    code, message = await error_of(jp_fetch, *parts, body=body)
    assert code == status and needle in message
    assert "secret" not in message
    assert json.loads((await jp_fetch(API, "operations")).body)["operations"] == []


async def test_push_and_pull_through_a_registry_never_show_credentials(jp_fetch, jp_root_dir, plain_registry):
    await built(jp_fetch)
    registry = plain_registry.repository("server")
    # when the environment is pushed, then its reference and digest come back
    op = await finished(jp_fetch, await post(jp_fetch, "environments", "web", "push", body={"registry": registry}))
    assert op["status"] == "completed", op
    assert op["result"]["reference"].startswith(f"{registry}/web:") and op["result"]["digest"].startswith("sha256:")
    assert "digest = " in (jp_root_dir / "containers.lock").read_text()
    # and pulling it back says what it pulled
    op = await finished(jp_fetch, await post(jp_fetch, "environments", "web", "pull", body={"registry": registry}))
    assert op["status"] == "completed", op
    assert op["result"]["image_id"].startswith("sha256:")
    # a registry where nothing answers: a failed operation that says so
    op = await finished(
        jp_fetch, await post(jp_fetch, "environments", "web", "pull", body={"registry": "127.0.0.1:9/none"})
    )
    assert op["status"] == "failed" and "127.0.0.1:9" in op["error"]["message"]


async def test_binder_export_writes_the_folder(jp_fetch, jp_root_dir):
    await built(jp_fetch)
    body = {"path": "binder", "repo": "team/project"}
    op = await finished(jp_fetch, await post(jp_fetch, "environments", "web", "binder", body=body))
    assert op["status"] == "completed", op
    assert "requirements.txt" in op["result"]["files"]
    assert "six==" in (jp_root_dir / "binder" / "requirements.txt").read_text()


async def test_reproduce_of_a_job_output_writes_its_report(jp_fetch, jp_root_dir):
    # given a notebook run as a job (its output records the environment)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print(6 * 7)")]
    nbformat.write(nb, str(jp_root_dir / "answer.ipynb"))
    response = await jp_fetch(
        API, "jobs", method="POST", body=json.dumps({"notebook": "answer.ipynb", "environment": "web"})
    )
    job = json.loads(response.body)
    for _ in range(2400):
        job = json.loads((await jp_fetch(API, "jobs", job["id"])).body)
        if job["status"] not in ("queued", "running"):
            break
        await asyncio.sleep(0.25)
    assert job["status"] == "completed", job
    # when it is reproduced from the sidebar
    op = await post(jp_fetch, "notebooks", "reproduce", body={"path": job["output_path"]})
    op = await finished(jp_fetch, op)
    # then it reproduced, and the HTML report is beside it
    assert op["status"] == "completed", op
    assert op["result"]["status"] == "reproduced" and op["result"]["exit_code"] == 0
    report = Path(jp_root_dir / op["result"]["report"])
    assert report.suffix == ".html" and "reproduced" in report.read_text()
