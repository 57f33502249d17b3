"""Parameter sweeps through the REST API: real server (auth on), real engine, real container kernels.

One small sweep (2 × 1 on the ``web`` environment) shows the whole flow; the bad requests are refused before
anything runs.
"""

from __future__ import annotations

import asyncio
import json

import nbformat
import pytest

from .test_jobs import API, error_of, write_notebook

pytestmark = pytest.mark.engine


async def wait_for_sweep(jp_fetch, sweep_id: str, seconds: float = 600) -> dict:
    for _ in range(int(seconds * 4)):
        sweep = json.loads((await jp_fetch(API, "sweeps", sweep_id)).body)
        if sweep["status"] != "running":
            return sweep
        await asyncio.sleep(0.25)
    raise AssertionError(f"sweep {sweep_id} still running: {sweep['counts']}")


async def test_a_sweep_runs_one_job_per_combination_and_summarizes_them(jp_fetch, jp_root_dir):
    # given a notebook with two parameters
    name = write_notebook(jp_root_dir, "grid.ipynb", ["n = 1\nword = 'x'", "print(word * n)"])
    # when a sweep of 2 × 1 combinations is posted (a list, and a string in the --sweep grammar), both at once
    body = {
        "notebook": name,
        "environment": "web",
        "sweep": {"n": [1, 2], "word": "a"},
        "max_parallel": 2,
        "min_parallel": 2,
    }
    response = await jp_fetch(API, "jobs", method="POST", body=json.dumps(body))
    # then it is created with one job per combination, each named by its parameters
    assert response.code == 201
    posted = json.loads(response.body)
    sweep_id = posted["id"]
    assert response.headers["Location"].endswith(f"/jupyter-containers/api/sweeps/{sweep_id}")
    folder = f"jobs/grid-{sweep_id}"
    assert [(j["parameters"], j["output_path"], j["sweep"]) for j in posted["jobs"]] == [
        ({"n": 1, "word": "a"}, f"{folder}/grid-n=1-word=a.ipynb", sweep_id),
        ({"n": 2, "word": "a"}, f"{folder}/grid-n=2-word=a.ipynb", sweep_id),
    ]
    # and when it ends, its summary is the command line's table, every job completed, two at once
    done = await wait_for_sweep(jp_fetch, sweep_id)
    assert done["status"] == "completed", done["jobs"]
    assert done["table"][0] == ["n", "word", "STATUS", "TIME", "OUTPUT"]
    assert [row[:3] + row[4:] for row in done["table"][1:]] == [
        ["1", "'a'", "completed", f"{folder}/grid-n=1-word=a.ipynb"],
        ["2", "'a'", "completed", f"{folder}/grid-n=2-word=a.ipynb"],
    ]
    assert done["summary"] == "2 of 2 jobs completed, at most 2 at once"
    # and each output notebook holds its own combination's output
    outputs = [nbformat.read(jp_root_dir / job["output_path"], as_version=4) for job in done["jobs"]]
    assert [nb.cells[2].outputs[0]["text"] for nb in outputs] == ["a\n", "aa\n"]
    # and the jobs are ordinary jobs: listed with their parameters and sweep id, alone with ?sweep=ID
    listed = json.loads((await jp_fetch(API, "jobs")).body)["jobs"]
    assert {j["id"]: j["sweep"] for j in listed if j["sweep"] == sweep_id} == {j["id"]: sweep_id for j in done["jobs"]}
    only = json.loads((await jp_fetch(API, "jobs", params={"sweep": sweep_id})).body)["jobs"]
    assert [(j["parameters"]["n"], j["status"]) for j in only] == [(1, "completed"), (2, "completed")]
    # and a sweep that has ended has nothing left to cancel
    cancelled = json.loads((await jp_fetch(API, "sweeps", sweep_id, method="DELETE")).body)
    assert cancelled["counts"] == {"completed": 2}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"sweep": {"n": []}}, "sweep.n: give at least one value"),
        ({"sweep": {"n": "1..x"}}, "sweep.n '1..x': '1..x' is not a range of whole numbers"),
        ({"sweep": {"n": 5}}, "sweep.n: 5 is not a list of values"),
        ({"sweep": {"a b": [1]}}, "parameter name 'a b' is not a Python variable name"),
        ({"sweep": {}}, "sweep: give at least one parameter"),
        ({"sweep": ["n=1", "n=2"]}, "sweep[1] 'n=2': n is swept twice"),
        ({"sweep": {"n": [1]}, "parameters": {"n": 2}}, "sweep.n: n is also given as a fixed value in parameters"),
        ({"sweep": "n=0..100000"}, "more than 10000 values"),
        ({"sweep": {"n": [1]}, "max_parallel": 0}, "max_parallel: 0 is not a number of jobs"),
        ({"sweep": {"n": [1]}, "max_parallel": 99}, "max_parallel: 99 is over this server's 2 jobs at once"),
        ({"sweep": {"n": [1]}, "min_parallel": 3}, "min_parallel: 3 must be between 1 and max_parallel (2)"),
        ({"sweep": {"n": [1]}, "target_utilization": "high"}, "target_utilization: 'high' is not a utilization"),
        ({"sweep": {"n": [1]}, "target_utilization": 0}, "target_utilization: 0 is not a utilization"),
        ({"max_parallel": 2}, "max_parallel: only for a sweep"),
    ],
)
async def test_bad_sweeps_are_refused_naming_the_field_and_value(jp_fetch, jp_root_dir, extra, message):
    # given a notebook
    write_notebook(jp_root_dir, "nb.ipynb", ["n = 1"])
    # when a bad sweep is posted
    body = json.dumps({"notebook": "nb.ipynb", "environment": "web", **extra})
    code, got = await error_of(jp_fetch, "jobs", method="POST", body=body)
    # then it is a 400 saying what to change, and no job was recorded
    assert (code, message in got) == (400, True), got
    assert json.loads((await jp_fetch(API, "jobs")).body)["jobs"] == []


async def test_an_unknown_sweep_is_404(jp_fetch):
    code, message = await error_of(jp_fetch, "sweeps", "0000deadbeef")
    assert code == 404 and "no sweep '0000deadbeef'" in message
    code, message = await error_of(jp_fetch, "jobs", params={"sweep": "0000deadbeef"})
    assert code == 404 and "no sweep" in message


async def test_a_sweep_whose_image_does_not_build_fails_every_job_saying_why(jp_fetch, jp_root_dir):
    # given an environment whose build breaks
    name = write_notebook(jp_root_dir, "nobuild.ipynb", ["n = 1", "print(n)"])
    body = {"notebook": name, "environment": "broken", "sweep": ["n=1,2"]}
    # when a sweep of it is posted
    sweep = json.loads((await jp_fetch(API, "jobs", method="POST", body=json.dumps(body))).body)
    done = await wait_for_sweep(jp_fetch, sweep["id"])
    # then no job ran, and each one says that the build failed, at its step
    assert done["status"] == "failed" and done["counts"] == {"failed": 2}
    assert all("the build breaks here" in job["error"]["message"] for job in done["jobs"]), done["jobs"]
    assert [row[1] for row in done["table"][1:]] == ["failed", "failed"]


async def test_cancelling_a_sweep_stops_its_running_job_and_starts_no_other(jp_fetch, jp_root_dir):
    from jupyter_containers.backends.docker import DockerBackend

    # given a sweep of two slow jobs, one at a time, the first one running
    cells = ["n = 1", "print('started', n)", "import time; time.sleep(120)"]
    name = write_notebook(jp_root_dir, "slowgrid.ipynb", cells)
    body = {"notebook": name, "environment": "web", "sweep": {"n": [1, 2]}, "max_parallel": 1}
    sweep = json.loads((await jp_fetch(API, "jobs", method="POST", body=json.dumps(body))).body)
    first = sweep["jobs"][0]
    for _ in range(2400):
        output = jp_root_dir / first["output_path"]
        if output.is_file() and "started" in output.read_text():
            break
        await asyncio.sleep(0.25)
    # when the sweep is cancelled
    response = await jp_fetch(API, "sweeps", sweep["id"], method="DELETE")
    assert response.code == 202
    done = await wait_for_sweep(jp_fetch, sweep["id"], seconds=120)
    # then both jobs are cancelled: the running one kept its output, the queued one never started
    assert done["counts"] == {"cancelled": 2}, done["jobs"]
    assert "started" in (jp_root_dir / first["output_path"]).read_text()
    assert done["jobs"][1]["started"] is None
    # and no container of the sweep is left
    assert not DockerBackend().list_containers(all=True, labels={"io.jupyter.containers.sweep": sweep["id"]})
