"""The engine dies under us: a build, a ``%%container`` session and a whole-notebook run, on the session's
second engine (tests/engines.py), whose dockerd is SIGKILLed and started again as after a crash.

Real throughout: the second engine is a real dockerd (Docker-in-Docker on the main engine), a remote target
for the core (workspace synced into a volume, kernel channels over CurveZMQ); killing it leaves its
containers running until it is started again, when it stops them (no live-restore), as on a real host.
Cells therefore wait on their own (a sleep, or forever), never on a file the test writes: the workspace is a
copy there. Each test restores the engine before it ends, so later tests of the session find it answering.
"""

from __future__ import annotations

import copy
import threading
import time
from pathlib import Path

import nbformat
import pytest

from jupyter_containers.errors import ContainersError, RunError

from ..workspace import make_workspace

pytestmark = pytest.mark.engine

SPEC = """
[environments.fragile]
pip = ["six==1.16.0"]
post_build = ["python -c \\"import time; print('post-build step running', flush=True); time.sleep(8)\\""]
"""


@pytest.fixture(scope="module")
def fragile(second_engine, engine_config, tmp_path_factory: pytest.TempPathFactory):
    """A manager on the second engine, for a workspace of its own."""
    from jupyter_containers.manager import ContainersManager

    root = make_workspace(tmp_path_factory.mktemp("fragile"), SPEC, config=None)
    config = copy.deepcopy(engine_config)
    config.merge(second_engine.docker_config())
    config.DockerBackend.kernel_address = second_engine.address()
    manager = ContainersManager(spec_path=root / "containers.toml", config=config)
    yield manager
    try:
        manager.workspace_sync().remove()
    except Exception:  # noqa: BLE001 - cleanup goes on (the engine may be gone)
        pass


@pytest.fixture
def engine(second_engine):
    """The second engine; answering again after the test, whatever the test did to it."""
    yield second_engine
    try:
        second_engine.api(timeout=5).version()
    except Exception:  # noqa: BLE001 - the test left it dead: start it again for the next test
        second_engine.start_engine()


def wait_for(predicate, what: str, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"{what} did not happen within {seconds:.0f} s"
        time.sleep(0.1)


def test_a_build_whose_engine_dies_leaves_no_tag_and_the_next_build_works(fragile, engine):
    # given a build that has reached its post-build step
    tag = fragile.builder.plan(fragile.environment("fragile")).tag
    events: list = []
    outcome: dict = {}

    def build() -> None:
        try:
            outcome["result"] = fragile.build("fragile", on_event=events.append)
        except BaseException as exc:  # noqa: BLE001 - examined below
            outcome["error"] = exc

    thread = threading.Thread(target=build)
    thread.start()
    wait_for(lambda: any("post-build step running" in e.text for e in events) or not thread.is_alive(), "post-build")
    assert "error" not in outcome, outcome
    # when the engine is killed
    engine.kill_engine()
    thread.join(120)
    assert not thread.is_alive(), "the build still waits on a dead engine"
    # then the build fails with our error, saying the engine went away, not with a traceback
    error = outcome.get("error")
    assert isinstance(error, ContainersError), repr(error)
    assert "engine" in str(error).lower()
    # and once the engine is back, no image carries the environment's tag
    engine.start_engine()
    assert fragile.backend.image_id(tag) is None
    # and the next build works and tags the image
    result = fragile.build("fragile")
    assert result.built and result.image == tag
    assert fragile.backend.image_id(tag) == result.image_id


def test_a_session_outlives_an_engine_crash_and_reports_the_restart_that_stops_it(fragile, engine, capfd):
    """While the engine is down the running cell goes on (its kernel still answers); when the engine comes
    back it stops the container (no live-restore), and the cell says so; the next cell gets a fresh kernel."""
    session = fragile.session("fragile")
    out: list[str] = []
    outcome: dict = {}

    def run(name: str, code: str) -> None:
        try:
            outcome[name] = session.execute(code, stdout=out.append, stderr=out.append)
        except BaseException as exc:  # noqa: BLE001 - examined below
            outcome[name] = exc

    try:
        # given a cell that has printed and goes on for a while
        thread = threading.Thread(
            target=run, args=("first", "import time\nprint('before', flush=True)\ntime.sleep(8)\nprint('after')")
        )
        thread.start()
        wait_for(lambda: "before" in "".join(out), "the cell's first output")
        # when the engine crashes while it runs
        engine.kill_engine()
        thread.join(60)
        # then the cell ended normally, with all of its output, and said that the engine does not answer
        assert not thread.is_alive()
        assert outcome["first"] is None, outcome["first"]
        assert "".join(out).split() == ["before", "after"]
        assert "the Docker engine does not answer" in capfd.readouterr().err
        # given a second cell that waits, when the engine comes back (and stops the kernel's container)
        out.clear()
        thread = threading.Thread(
            target=run, args=("second", "import time\nprint('before', flush=True)\nwhile True:\n    time.sleep(0.1)")
        )
        thread.start()
        wait_for(lambda: "before" in "".join(out), "the second cell's first output")
        engine.start_engine()
        thread.join(60)
        # then the cell fails with a message that says what happened and what comes next
        assert not thread.is_alive()
        error = outcome["second"]
        assert isinstance(error, RunError), repr(error)
        assert "next %%container cell starts a fresh one" in str(error), str(error)
        assert "".join(out).split() == ["before"]
        assert session.stopped
        # and the next cell runs in a fresh kernel
        fresh = fragile.session("fragile")
        assert fresh is not session
        out.clear()
        fresh.execute("print('fresh', flush=True)", stdout=out.append)
        assert "".join(out) == "fresh\n"
        fresh.stop()
    finally:
        session.stop()


def test_a_notebook_run_keeps_its_output_when_the_engine_restarts_under_it(fragile, engine, tmp_path: Path):
    from jupyter_containers.jobs.runner import ExecuteRequest

    workspace = fragile.workspace_dir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("print('first cell')"),
        nbformat.v4.new_code_cell("import time\nprint('partial output', flush=True)\nwhile True:\n    time.sleep(0.1)"),
    ]
    notebook = workspace / "waits.ipynb"
    nbformat.write(nb, notebook)
    output = workspace / "waits.out.ipynb"
    outcome: dict = {}
    lines: list[str] = []

    def run() -> None:
        request = ExecuteRequest(notebook=notebook, environment="fragile", output_path=output)
        outcome["result"] = fragile.execute(request, log=lines.append)

    def printed() -> str:
        try:
            cells = nbformat.read(output, as_version=4).cells
        except (OSError, ValueError):
            return ""
        return "".join(o.get("text", "") for c in cells for o in c.get("outputs", []))

    # given a run whose second cell has printed and goes on
    thread = threading.Thread(target=run)
    thread.start()
    wait_for(lambda: "partial output" in printed(), "the running cell's output in the output notebook")
    # when the engine crashes, stays away a while, and comes back (stopping the kernel's container)
    engine.kill_engine()
    time.sleep(3)
    engine.start_engine()
    thread.join(120)
    assert not thread.is_alive(), "the run still waits on a kernel that the engine stopped"
    # then the run failed, saying the kernel died in that cell
    result = outcome["result"]
    assert result.status == "failed"
    assert "the kernel died while running cell 1" in result.error["message"], result.error
    # and the output so far is kept, with the failure in the notebook's record
    assert "first cell" in printed() and "partial output" in printed()
    assert nbformat.read(output, as_version=4).metadata["jupyter_containers"]["status"] == "failed"
    # and a new run works
    done = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('done')")])
    nbformat.write(done, workspace / "done.ipynb")
    request = ExecuteRequest(notebook=workspace / "done.ipynb", environment="fragile")
    assert fragile.execute(request, log=lines.append).status == "completed"
