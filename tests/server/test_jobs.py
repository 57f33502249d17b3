"""Notebook jobs through the REST API: real server (auth on), real engine, real container kernels."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import nbformat
import pytest
from tornado.httpclient import HTTPClientError

from jupyter_containers.jobs.store import JobStore

pytestmark = pytest.mark.engine

API = "jupyter-containers/api"


def write_notebook(folder: Path, name: str, cells: list[str]) -> str:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nb.cells[0].metadata["tags"] = ["parameters"]
    nbformat.write(nb, folder / name)
    return name


async def post_job(jp_fetch, body: dict) -> dict:
    response = await jp_fetch(API, "jobs", method="POST", body=json.dumps(body))
    assert response.code == 201
    job = json.loads(response.body)
    assert response.headers["Location"].endswith(f"/jupyter-containers/api/jobs/{job['id']}")
    return job


async def wait_for(jp_fetch, job_id: str, until: tuple[str, ...], seconds: float = 600) -> dict:
    for _ in range(int(seconds * 4)):
        job = json.loads((await jp_fetch(API, "jobs", job_id)).body)
        if job["status"] in until:
            return job
        await asyncio.sleep(0.25)
    raise AssertionError(f"job {job_id} still {job['status']}")


async def error_of(jp_fetch, *parts, **kwargs) -> tuple[int, str]:
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(API, *parts, **kwargs)
    return info.value.code, json.loads(info.value.response.body)["message"]


async def test_job_runs_in_the_container_with_parameters(jp_fetch, jp_root_dir):
    # given a notebook with a parameters cell
    name = write_notebook(jp_root_dir, "report.ipynb", ["n = 1", "import os; print(n * 2, os.getuid())"])
    # when a job runs it with a parameter and a memory limit
    job = await post_job(
        jp_fetch, {"notebook": name, "environment": "web", "parameters": {"n": 21}, "resources": {"memory": "300m"}}
    )
    done = await wait_for(jp_fetch, job["id"], ("completed", "failed"))
    # then it completed and its output notebook records what ran where
    assert done["status"] == "completed", done["error"]
    output = json.loads((await jp_fetch(API, "jobs", job["id"], "output")).body)
    assert "".join(output["cells"][2]["outputs"][0]["text"]) == "42 1000\n"
    meta = output["metadata"]["jupyter_containers"]
    assert meta["environment"] == "web" and meta["resources"]["memory"] == 300 * 2**20
    assert (jp_root_dir / done["output_path"]).is_file()
    # and it is listed
    jobs = json.loads((await jp_fetch(API, "jobs")).body)["jobs"]
    assert job["id"] in [j["id"] for j in jobs]


async def test_job_takes_structured_parameters_and_report_mode(jp_fetch, jp_root_dir):
    # given a notebook using a list with non-finite numbers (JSON as Python reads it) and a nested object
    name = write_notebook(
        jp_root_dir, "structured.ipynb", ["bounds = []\ncfg = {}", "print(bounds[1] > 1e308, cfg['model']['depth'])"]
    )
    parameters = {"bounds": [0, float("inf")], "cfg": {"model": {"depth": 4}}}  # json.dumps writes Infinity
    body = json.dumps({"notebook": name, "environment": "web", "report_mode": True, "parameters": parameters})
    # when a job runs it in report mode
    response = await jp_fetch(API, "jobs", method="POST", body=body)
    job = json.loads(response.body)
    done = await wait_for(jp_fetch, job["id"], ("completed", "failed"))
    # then the values arrived as Python values and the output notebook hides the code
    assert done["status"] == "completed", done["error"]
    output = json.loads((await jp_fetch(API, "jobs", job["id"], "output")).body)
    assert "".join(output["cells"][2]["outputs"][0]["text"]) == "True 4\n"
    assert (
        "".join(output["cells"][1]["source"])
        == "# Parameters\nbounds = [0, float('inf')]\ncfg = {'model': {'depth': 4}}"
    )
    assert all(c["metadata"]["jupyter"]["source_hidden"] for c in output["cells"])


async def test_cancel_stops_a_running_job_and_keeps_its_output(jp_fetch, jp_root_dir):
    name = write_notebook(
        jp_root_dir, "slow.ipynb", ["pass", "print('first cell ran')", "import time; time.sleep(120)"]
    )
    job = await post_job(jp_fetch, {"notebook": name, "environment": "web"})
    # wait until the second cell has produced output
    for _ in range(2400):
        if (jp_root_dir / job["output_path"]).is_file() and "first cell ran" in (
            jp_root_dir / job["output_path"]
        ).read_text():
            break
        await asyncio.sleep(0.25)
    response = await jp_fetch(API, "jobs", job["id"], method="DELETE")
    assert response.code == 202
    done = await wait_for(jp_fetch, job["id"], ("cancelled", "failed", "completed"), seconds=120)
    assert done["status"] == "cancelled"
    assert "first cell ran" in (jp_root_dir / done["output_path"]).read_text()
    # and cancelling again is a conflict
    code, message = await error_of(jp_fetch, "jobs", job["id"], method="DELETE")
    assert code == 409 and "already ended" in message


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ({"notebook": "../x.ipynb", "environment": "web"}, 400, "outside the server root"),
        ({"notebook": "missing.ipynb", "environment": "web"}, 404, "does not exist"),
        ({"notebook": "nb.ipynb", "environment": "wbe"}, 404, "did you mean 'web'"),
        (
            {"notebook": "nb.ipynb", "environment": "web", "resources": {"cpus": 4096}},
            400,
            "over this server's maximum",
        ),
        ({"notebook": "nb.ipynb", "environment": "web", "resources": {"gpus": 99}}, 400, "over this server's maximum"),
        ({"notebook": "nb.ipynb", "environment": "web", "resources": {"privileged": True}}, 400, "unknown resource"),
        ({"notebook": "nb.ipynb", "environment": "web", "image": "alpine"}, 400, "unknown field 'image'"),
        ({"notebook": "nb.ipynb", "environment": "web", "parameters": {"a b": 1}}, 400, "not a Python variable name"),
        ({"notebook": "nb.ipynb", "environment": "web", "parameters": [1]}, 400, "give a mapping of parameter names"),
        (
            {
                "notebook": "nb.ipynb",
                "environment": "web",
                "parameters": {"x": {"a": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}},
            },
            400,
            "parameters.x.a[0][0]",
        ),
        ({"notebook": "nb.ipynb", "environment": "web", "report_mode": "yes"}, 400, "report_mode: give true or false"),
        ({"notebook": "r.ipynb", "environment": "web"}, 400, "r.ipynb is written in R"),
        ({"notebook": "nb.ipynb", "environment": "web", "target": 5}, 400, "target: give the name of a [targets."),
        ({"notebook": "nb.ipynb", "environment": "web", "target": "nowher"}, 400, "did you mean 'nowhere'"),
    ],
)
async def test_bad_job_requests_are_refused_with_a_reason(jp_fetch, jp_root_dir, body, code, message):
    write_notebook(jp_root_dir, "nb.ipynb", ["x = 1"])
    r_notebook = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "ir", "display_name": "R", "language": "R"}})
    r_notebook.cells = [nbformat.v4.new_code_cell("x <- 1")]
    nbformat.write(r_notebook, jp_root_dir / "r.ipynb")
    got_code, got_message = await error_of(jp_fetch, "jobs", method="POST", body=json.dumps(body))
    assert (got_code, message in got_message) == (code, True), got_message


async def test_a_job_runs_on_the_target_it_names_and_targets_are_listed(jp_fetch, jp_root_dir):
    """The target's engine is the one the job uses: an unreachable one fails the job, naming its address;
    `GET targets` lists the configured engine and each [targets.NAME] with its reachability."""
    # when the targets are listed
    body = json.loads((await jp_fetch(API, "targets")).body)
    rows = {row["name"]: row for row in body["targets"]}
    # then the configured engine answers and the unreachable target says why
    assert rows["(default)"]["reachable"] is True and rows["(default)"]["version"]
    assert rows["nowhere"]["reachable"] is False and "127.0.0.1:9" in rows["nowhere"]["error"]
    # when a job names that target
    name = write_notebook(jp_root_dir, "elsewhere.ipynb", ["print('never')"])
    response = await jp_fetch(
        API, "jobs", method="POST", body=json.dumps({"notebook": name, "environment": "web", "target": "nowhere"})
    )
    job = json.loads(response.body)
    assert job["target"] == "nowhere"
    # then it fails there, saying which engine did not answer (not on the default engine)
    done = await wait_for(jp_fetch, job["id"], ("failed", "completed"), seconds=120)
    assert done["status"] == "failed" and "127.0.0.1:9" in done["error"]["message"], done


async def test_unknown_job_is_404(jp_fetch):
    code, message = await error_of(jp_fetch, "jobs", "0000deadbeef")
    assert code == 404 and "no job" in message


@pytest.fixture
def previous_server_jobs(jp_root_dir):
    """A job store as a previous server left it: one job still marked running."""
    store = JobStore(jp_root_dir.parent / "jobs.sqlite")
    job = store.create("old.ipynb", "web", "/x/containers.toml", {}, {})
    store.update(job.id, status="running", output_path="jobs/old.ipynb")
    return job.id


async def test_restart_marks_running_jobs_interrupted(previous_server_jobs, jp_fetch):
    job = json.loads((await jp_fetch(API, "jobs", previous_server_jobs)).body)
    assert job["status"] == "interrupted"
    assert job["output_path"] == "jobs/old.ipynb"
