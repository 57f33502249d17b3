"""``notebooks/check`` and ``notebooks/restore`` (the notebook toolbar item) on a real jupyter-server (auth on).

They read and write files only: no engine is asked, so these tests need none either.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from tornado.httpclient import HTTPClientError

from jupyter_containers.images.lock import read_lock
from jupyter_containers.share.metadata import with_record
from jupyter_containers.spec.parse import load_spec

API = "jupyter-containers/api"

LOCK = {
    "spec_hash": "ab" * 32,
    "image": "jupyter-containers-test/solo:abababababababab",
    "image_id": "sha256:" + "1" * 64,
    "base": "python:3.11-slim",
    "base_image_id": "sha256:" + "2" * 64,
    "python": "3.11.2",
    "packages": ["six==1.16.0"],
    "apt": [],
    "builder": "0.1.0",
}


def write_notebook(root: Path, name: str, records: list[dict]) -> str:
    nb = nbformat.v4.new_notebook()
    metadata: dict = {}
    for record in records:
        metadata = with_record(metadata, record)
    nb.metadata.update(metadata)
    nbformat.write(nb, str(root / name))
    return name


def record_of(root: Path, name: str, **changes) -> dict:
    spec = load_spec(root / "containers.toml").environments[name].to_dict()
    spec.update(changes)
    return {"environment": name, "spec": spec, "lock": None, "image": None, "image_id": None}


async def get(jp_fetch, *parts, **kwargs):
    response = await jp_fetch(API, *parts, **kwargs)
    return json.loads(response.body)


async def error_of(jp_fetch, *parts, **kwargs):
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(API, *parts, **kwargs)
    return info.value.code, json.loads(info.value.response.body)["message"]


async def test_check_tells_matching_changed_and_missing_environments_apart(jp_fetch, jp_root_dir):
    # given a notebook recording three environments: one as the workspace has it, one whose spec was changed
    # since, one the workspace does not have
    records = [
        record_of(jp_root_dir, "web"),
        record_of(jp_root_dir, "broken", pip=["six"]),
        {**record_of(jp_root_dir, "web"), "environment": "solo", "lock": LOCK},
    ]
    path = write_notebook(jp_root_dir, "three.ipynb", records)
    # when the toolbar item asks
    data = await get(jp_fetch, "notebooks", "check", params={"path": path})
    # then each is told apart, with the recorded lock where there is one
    rows = {row["name"]: row for row in data["environments"]}
    assert data["path"] == "three.ipynb"
    assert {n: r["status"] for n, r in rows.items()} == {
        "web": "matches",
        "broken": "spec-changed",
        "solo": "missing",
    }
    assert rows["solo"]["recorded_lock"]["packages"] == ["six==1.16.0"] and rows["solo"]["current_lock"] is None
    assert "broken" in rows["broken"]["message"]


async def test_a_notebook_without_records_has_no_environments(jp_fetch, jp_root_dir):
    nbformat.write(nbformat.v4.new_notebook(), str(jp_root_dir / "plain.ipynb"))
    assert (await get(jp_fetch, "notebooks", "check", params={"path": "plain.ipynb"}))["environments"] == []


async def test_restore_writes_spec_and_lock_and_refuses_to_overwrite_without_asking(jp_fetch, jp_root_dir):
    # given a notebook recording an environment the workspace lacks, and one it has differently
    records = [
        {**record_of(jp_root_dir, "web"), "environment": "solo", "lock": LOCK},
        record_of(jp_root_dir, "broken", pip=["six"]),
    ]
    path = write_notebook(jp_root_dir, "restore.ipynb", records)
    # when the missing one is restored
    body = json.dumps({"path": path, "environment": "solo"})
    data = await get(jp_fetch, "notebooks", "restore", method="POST", body=body)
    # then the workspace has its spec and lock, and the check says it matches
    assert data["spec_file"] == "containers.toml" and data["lock_file"] == "containers.lock"
    assert "solo" in load_spec(jp_root_dir / "containers.toml").environments
    assert read_lock(jp_root_dir / "containers.lock")["solo"].packages == ("six==1.16.0",)
    rows = (await get(jp_fetch, "notebooks", "check", params={"path": path}))["environments"]
    assert {r["name"]: r["status"] for r in rows}["solo"] == "matches"
    # when the changed one is restored without overwrite: a 409 naming it, and nothing changed
    before = (jp_root_dir / "containers.toml").read_text()
    code, message = await error_of(
        jp_fetch, "notebooks", "restore", method="POST", body=json.dumps({"path": path, "environment": "broken"})
    )
    assert code == 409 and "'broken'" in message and "overwrite" in message
    assert (jp_root_dir / "containers.toml").read_text() == before
    # with overwrite: replaced
    body = json.dumps({"path": path, "environment": "broken", "overwrite": True})
    await get(jp_fetch, "notebooks", "restore", method="POST", body=body)
    assert load_spec(jp_root_dir / "containers.toml").environments["broken"].pip == ("six",)


@pytest.mark.parametrize(
    ("params", "status", "needle"),
    [
        ({"path": "../outside.ipynb"}, 400, "outside the server root"),
        ({"path": "/etc/passwd.ipynb"}, 400, "outside the server root"),
        ({"path": "link/x.ipynb"}, 400, "outside the server root"),
        ({"path": "containers.toml"}, 400, "not a notebook"),
        ({"path": ""}, 400, "path"),
        ({"path": "nope.ipynb"}, 404, "nope.ipynb"),
    ],
)
async def test_check_paths_stay_inside_the_server_root(jp_fetch, jp_root_dir, tmp_path, params, status, needle):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    write_notebook(outside, "x.ipynb", [record_of(jp_root_dir, "web")])
    (jp_root_dir / "link").symlink_to(outside)
    code, message = await error_of(jp_fetch, "notebooks", "check", params=params)
    assert code == status and needle in message


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"path": "../x.ipynb", "environment": "web"}, "outside the server root"),
        ({"path": "r.ipynb", "environment": 3}, "environment"),
        ({"path": "r.ipynb", "environment": "web", "overwrite": "yes"}, "overwrite"),
        ({"path": "r.ipynb", "environment": "web", "force": True}, "unknown field 'force'"),
    ],
)
async def test_restore_refuses_bad_bodies_with_the_field(jp_fetch, jp_root_dir, body, needle):
    write_notebook(jp_root_dir, "r.ipynb", [record_of(jp_root_dir, "web")])
    code, message = await error_of(jp_fetch, "notebooks", "restore", method="POST", body=json.dumps(body))
    assert code == 400 and needle in message


async def test_restore_of_an_environment_the_notebook_does_not_record_is_404(jp_fetch, jp_root_dir):
    write_notebook(jp_root_dir, "r.ipynb", [record_of(jp_root_dir, "web")])
    body = json.dumps({"path": "r.ipynb", "environment": "other"})
    code, message = await error_of(jp_fetch, "notebooks", "restore", method="POST", body=body)
    assert code == 404 and "'other'" in message and "web" in message
