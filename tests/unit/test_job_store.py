"""The SQLite job store: jobs survive a restart, and running ones are marked interrupted."""

import pytest

from jupyter_containers.jobs.store import JobStore


def test_jobs_survive_reopening(tmp_path):
    # given a job recorded by one server
    store = JobStore(tmp_path / "jobs.sqlite")
    job = store.create("nb.ipynb", "web", "/w/containers.toml", {"size": 3}, {"memory": 1024})
    store.update(job.id, status="completed", output_path="jobs/nb-1.ipynb", finished=2.0)
    # when another server opens the same file
    again = JobStore(tmp_path / "jobs.sqlite").get(job.id)
    # then everything is there
    assert again.status == "completed"
    assert again.parameters == {"size": 3}
    assert again.resources == {"memory": 1024}
    assert again.output_path == "jobs/nb-1.ipynb"


def test_running_jobs_are_marked_interrupted_on_restart(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    running = store.create("a.ipynb", "web", "/w/c.toml", {}, {})
    store.update(running.id, status="running", output_path="jobs/a.ipynb")
    done = store.create("b.ipynb", "web", "/w/c.toml", {}, {})
    store.update(done.id, status="completed")
    # when the next server starts
    interrupted = JobStore(tmp_path / "jobs.sqlite").mark_interrupted()
    # then only the running job changed, and its output path is kept
    assert interrupted == [running.id]
    job = store.get(running.id)
    assert job.status == "interrupted"
    assert "partial output was kept" in job.error["message"]
    assert job.output_path == "jobs/a.ipynb"
    assert store.get(done.id).status == "completed"


def test_list_is_newest_first(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    first = store.create("a.ipynb", "e", "s", {}, {})
    second = store.create("b.ipynb", "e", "s", {}, {})
    assert [j.id for j in store.list()] == [second.id, first.id]


@pytest.mark.parametrize(("column", "value"), [("target", "gpu-box"), ("sweep", "sw")])
def test_a_database_of_an_earlier_version_gets_the_new_column(tmp_path, column, value):
    import sqlite3

    from jupyter_containers.jobs.store import SCHEMA

    # given a job database written before jobs had the column (a target; a sweep)
    path = tmp_path / "jobs.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA.replace(f",\n    {column} TEXT", ""))
        db.execute(
            "INSERT INTO jobs (id, notebook, environment, spec_file, status, created) "
            "VALUES ('old', 'a.ipynb', 'e', 's', 'completed', 1)"
        )
    assert column not in {row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(jobs)")}
    # when a server opens it
    store = JobStore(path)
    # then its old jobs read back without one, and new ones keep theirs
    assert getattr(store.get("old"), column) is None
    assert getattr(store.get(store.create("b.ipynb", "e", "s", {}, {}, **{column: value}).id), column) == value


def test_a_sweeps_jobs_are_listed_in_its_order_with_its_record(tmp_path):
    from jupyter_containers.jobs.store import SweepRecord

    # given a sweep of two jobs and an unrelated job
    store = JobStore(tmp_path / "jobs.sqlite")
    store.create_sweep(SweepRecord(id="sw1", notebook="a.ipynb", environment="e", axes=["seed"], options={"x": 1}))
    first = store.create("a.ipynb", "e", "s", {"seed": 1}, {}, sweep="sw1")
    store.create("b.ipynb", "e", "s", {}, {})
    second = store.create("a.ipynb", "e", "s", {"seed": 2}, {}, sweep="sw1")
    store.update_sweep("sw1", peak=2)
    # when another server reads it
    again = JobStore(tmp_path / "jobs.sqlite")
    # then the sweep's jobs come in the order they were made, each naming the sweep, and its record is kept
    assert [(j.id, j.sweep) for j in again.list(sweep="sw1")] == [(first.id, "sw1"), (second.id, "sw1")]
    record = again.get_sweep("sw1")
    assert (record.axes, record.options, record.peak) == (["seed"], {"x": 1}, 2)
    assert again.get_sweep("nope") is None
