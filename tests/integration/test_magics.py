"""``%%container`` in real notebooks: the local python3 kernel of the venv, nbclient, the real engine.

One notebook run (module fixture) holds most cells, so they share one warm container kernel as a user's
notebook would; each test then checks one behaviour on the outputs of its own cell.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from ..kernels import stream_text
from ..workspace import make_workspace

pytestmark = pytest.mark.engine

SPEC = """
[environments.kern]
description = "numpy and pandas for the magics tests"
pip = ["numpy", "pandas"]
"""
CONFIG = "c.Builder.image_repository = 'jupyter-containers-test/{env}'\n"
ANSI = re.compile(r"\x1b\[[0-9;]*m")

PNG_CELL = r"""%%container kern --memory 200m
import struct, zlib
from IPython.display import HTML, Image, display

def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
png += chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b"")
display(Image(data=png))
display(HTML("<b>from the container</b>"))
"""

CELLS = {
    "setup": "%load_ext jupyter_containers\nimport os\nimport numpy as np\nimport pandas as pd\nprint(os.getpid())",
    "where": (
        "%%container kern --memory 200m\n"
        "import os, socket\n"
        "from pathlib import Path\n"
        "v1 = Path('/sys/fs/cgroup/memory/memory.limit_in_bytes')\n"
        "limit = (v1 if v1.exists() else Path('/sys/fs/cgroup/memory.max')).read_text().strip()\n"
        "print(limit, socket.gethostname(), os.getuid())"
    ),
    "values": (
        "arr = np.arange(12).reshape(3, 4)\n"
        "df = pd.DataFrame({'a': [1, 2, 3], 'b': ['x', 'y', 'z']})\n"
        "conf = {'name': 'run', 'sizes': [1, 2, 3]}"
    ),
    "roundtrip": (
        "%%container kern --memory 200m --in arr df conf --out arr2 df2 conf2\n"
        "arr2 = arr * 2\n"
        "df2 = df.assign(c=df.a * 10)\n"
        "conf2 = {**conf, 'done': True}"
    ),
    "check": (
        "print(type(arr2).__name__, arr2.tolist())\nprint(type(df2).__name__, df2.to_dict('list'))\nprint(conf2)"
    ),
    # large enough for the buffers to travel out of band (kernel/transfer.py), then changed in the container
    "big_values": (
        "big = np.arange(1_000_000, dtype=np.float64)\n"
        "bigdf = pd.DataFrame({'x': np.arange(500_000), 'y': np.ones(500_000)})"
    ),
    "big_roundtrip": (
        "%%container kern --memory 200m --in big bigdf --out big2 bigdf2 leftover\n"
        "big[0] = -1.0\n"
        "big2 = big * 2\n"
        "bigdf2 = bigdf.assign(z=bigdf.x + bigdf.y)\n"
        "import os\n"
        "leftover = sorted(n for n in os.listdir('/run/jupyter-containers') if n.endswith(('.pkl', '.pipe')))"
    ),
    "big_check": (
        "print(big2[:3].tolist(), big2[-1], big[0], big2.flags.writeable)\n"
        "print(bigdf2.z.sum(), bigdf2.shape, leftover)"
    ),
    "displays": PNG_CELL,
    "dataframe": "%%container kern --memory 200m\nimport pandas as pd\npd.DataFrame({'x': [1, 2], 'y': [3, 4]})",
    "error": "%%container kern --memory 200m\ndef divide(a, b):\n    return a / b\n\ndivide(1, 0)",
    "generator": "gen = (i for i in range(3))",
    "unpicklable": "%%container kern --memory 200m --in gen\npass",
    "missing_local": "%%container kern --memory 200m --in not_defined_here\npass",
    "missing_remote": "%%container kern --memory 200m --out never_assigned\nx = 1",
    "node": "from nbformat import NotebookNode\nnode = NotebookNode(a=1)",
    "module_missing": "%%container kern --memory 200m --in node\npass",
    "timeout": "%%container kern --memory 200m --timeout 1s\nimport time\ntime.sleep(30)",
    "after_timeout": "%%container kern --memory 200m\nprint('still warm', arr.sum())",
    "oom": "%%container kern --memory 128m\nhog = b'x' * (512 * 2**20)",
    # a value larger than the container may hold, sent in (through a pipe): the kernel dies reading it
    "huge_values": "huge = np.ones(40_000_000)",
    "huge_in": "%%container kern --memory 128m --in huge\npass",
    "status": "%container status",
    "stop": "%container stop --all",
    "fresh": "%%container kern --memory 200m\nprint('fresh session', 'arr' in globals())",
    "child": (
        "import nbformat\n"
        "child = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('n = 1'),"
        " nbformat.v4.new_code_cell('import os; print(n * 2, os.getuid())')])\n"
        "child.cells[0].metadata['tags'] = ['parameters']\n"
        "nbformat.write(child, 'child.ipynb')"
    ),
    "execute": "%container execute child.ipynb --env kern -p n 21 -o child.out.ipynb --memory 200m -q",
    "execute_usage": "%container execute child.ipynb",
    "execute_reschedule": "%container execute child.ipynb --env kern --reschedule -o rescheduled.ipynb -q",
    "cell_reschedule": "%%container kern --memory 200m --reschedule\nprint('ran')",
    "execute_sweep": (
        "%container execute child.ipynb --env kern --sweep n=1..2 -o sweep-out --memory 200m -q --min-parallel 2"
    ),
}


@pytest.fixture(scope="session")
def magics_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A notebook folder with the spec (environment ``kern``) and the test image repository config."""
    root = tmp_path_factory.mktemp("magics")
    make_workspace(root, SPEC, config=CONFIG)
    return root


@pytest.fixture(scope="session")
def kern_image(magics_project: Path) -> str:
    """``kern`` built once per session; fails (never skips) without an engine."""
    from jupyter_containers.config import load_config
    from jupyter_containers.errors import EngineUnavailableError
    from jupyter_containers.manager import ContainersManager

    manager = ContainersManager(spec_path=magics_project / "containers.toml", config=load_config(magics_project))
    try:
        return manager.build("kern").image
    except EngineUnavailableError as exc:
        pytest.fail(f"the magics tests need a Docker engine; run them with 'bash scripts/test.sh': {exc}")


def session_containers(pid: int) -> list[dict]:
    from jupyter_containers.backends.docker import DockerBackend

    return [
        c
        for c in DockerBackend().list_containers(all=True)
        if c.label("role") == "session" and c.label("owner-pid") == str(pid)
    ]


class Run:
    """The executed notebook, its cells by name, and container snapshots taken right after some cells."""

    def __init__(self, nb, names: list[str]):
        self.nb = nb
        self.index = {name: i for i, name in enumerate(names)}
        self.snapshots: dict[str, list[dict]] = {}
        self.pid: int | None = None

    def outputs(self, name: str) -> list[dict]:
        return self.nb.cells[self.index[name]].outputs

    def stdout(self, name: str) -> str:
        return "".join(o["text"] for o in self.outputs(name) if o["output_type"] == "stream" and o["name"] == "stdout")

    def error(self, name: str) -> dict:
        errors = [o for o in self.outputs(name) if o["output_type"] == "error"]
        assert errors, f"cell {name!r} gave no error: {self.outputs(name)}"
        return errors[0]


@pytest.fixture(scope="module")
def run(magics_project: Path, kern_image: str) -> Run:
    import nbformat
    from nbclient import NotebookClient
    from nbformat.v4 import new_code_cell, new_notebook

    names = list(CELLS)
    nb = new_notebook(cells=[new_code_cell(CELLS[name]) for name in names])
    result = Run(nb, names)

    def on_cell_executed(cell, cell_index, execute_reply):
        name = names[cell_index]
        if name == "setup":
            result.pid = int(result.stdout("setup").split()[0])
        if name in ("stop", "fresh"):
            result.snapshots[name] = session_containers(result.pid)

    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=120,
        allow_errors=True,
        resources={"metadata": {"path": str(magics_project)}},
        on_cell_executed=on_cell_executed,
    )
    client.execute()
    nbformat.validate(nb)
    return result


# ---------------------------------------------------------------------- cells run in the container
def test_cell_output_comes_from_the_container_under_its_limits(run: Run):
    # when a %%container cell prints where it runs
    limit, hostname, uid = run.stdout("where").splitlines()[-1].split()  # after any build progress lines
    # then that is the container: its memory limit, its own hostname, the unprivileged user
    assert limit == str(200 * 2**20)
    assert hostname != socket.gethostname()
    assert uid == ("1000" if os.getuid() == 0 else str(os.getuid()))


def test_variables_round_trip_through_the_container(run: Run):
    # given a numpy array, a DataFrame and a dict sent in with --in and results brought back with --out
    lines = run.stdout("check").splitlines()
    # then the results are the local types with the values computed in the container
    assert lines[0] == "ndarray [[0, 2, 4, 6], [8, 10, 12, 14], [16, 18, 20, 22]]"
    assert lines[1] == "DataFrame {'a': [1, 2, 3], 'b': ['x', 'y', 'z'], 'c': [10, 20, 30]}"
    assert lines[2] == "{'name': 'run', 'sizes': [1, 2, 3], 'done': True}"


def test_large_arrays_and_frames_travel_out_of_band_and_stay_writable(run: Run):
    # given an 8 MB array and a 8 MB DataFrame sent in, changed in the container, and brought back
    lines = run.stdout("big_check").splitlines()
    # then the container could write to what arrived, the results came back whole and writable, the local
    # array is untouched, and no transfer file was left in the container's folder
    assert lines[0] == "[-2.0, 2.0, 4.0] 1999998.0 0.0 True"
    assert lines[1] == "125000250000.0 (500000, 3) []"


def test_displays_arrive_with_their_mime_types(run: Run):
    # when the container cell displays a PNG and HTML
    displays = [o for o in run.outputs("displays") if o["output_type"] == "display_data"]
    # then both arrive as display data of their own mime types
    assert [("image/png" in d["data"], "text/html" in d["data"]) for d in displays] == [(True, False), (False, True)]
    assert "<b>from the container</b>" in displays[1]["data"]["text/html"]


def test_last_expression_is_an_execute_result(run: Run):
    # when a container cell ends with a DataFrame
    results = [o for o in run.outputs("dataframe") if o["output_type"] == "execute_result"]
    # then the notebook shows it as the cell's result, as HTML
    assert len(results) == 1
    assert "<table" in results[0]["data"]["text/html"]


def test_error_keeps_the_traceback_from_the_container(run: Run):
    # when the container code raises
    error = run.error("error")
    traceback = ANSI.sub("", "\n".join(error["traceback"]))
    # then the error is the remote one, with the remote lines, and none of the magic's machinery
    assert error["ename"] == "ZeroDivisionError"
    assert "divide(1, 0)" in traceback and "return a / b" in traceback
    # and its cell is numbered as the notebook numbers it, not as the container kernel counted its cells
    count = run.nb.cells[run.index["error"]].execution_count
    assert f"Cell In[{count}], line 4" in traceback, traceback
    assert "run_cell_magic" not in traceback
    assert not [name for name in ("session.py", "remote.py", "transfer.py", "pool.py") if name in traceback]


# ---------------------------------------------------------------------- variables that cannot travel
def test_unpicklable_variable_gets_a_clear_error(run: Run):
    error = run.error("unpicklable")
    assert error["evalue"].startswith("variable 'gen' cannot be sent to the container: ")
    assert "generator" in error["evalue"]
    assert len(error["traceback"]) == 1  # one line, no traceback of ours


def test_missing_local_variable_is_named(run: Run):
    assert run.error("missing_local")["evalue"] == "no variable named 'not_defined_here' in this notebook"


def test_missing_remote_variable_is_named(run: Run):
    assert "no variable named 'never_assigned' in the container kernel" in run.error("missing_remote")["evalue"]


def test_value_needing_a_package_the_environment_lacks_says_to_add_it(run: Run):
    evalue = run.error("module_missing")["evalue"]
    assert "variable 'node' could not be loaded in the container" in evalue
    assert "No module named 'nbformat'" in evalue
    assert "add it to the pip list of 'kern'" in evalue


# ---------------------------------------------------------------------- limits
def test_cell_timeout_interrupts_the_cell_and_keeps_the_session(run: Run):
    # when a cell runs past its --timeout
    error = run.error("timeout")
    # then it is interrupted with a clear message, and the warm session (with its variables) goes on
    assert error["ename"] == "RunTimeoutError", error["evalue"]
    assert "cell exceeded its timeout of 1s" in error["evalue"]
    assert run.stdout("after_timeout") == "still warm 66\n"


def test_out_of_memory_names_the_limit(run: Run):
    error = run.error("oom")
    assert error["ename"] == "OutOfMemoryError", error["evalue"]
    assert "ran out of its 128 MiB memory limit" in error["evalue"]
    assert "the next %%container cell starts a fresh one" in error["evalue"]


def test_a_value_too_large_for_the_container_fails_the_cell_naming_the_limit(run: Run):
    # a 320 MB array sent into a 128 MiB container: the kernel is killed while it reads it; the push waits for
    # no pipe nobody reads, and the error names the limit, as for a cell that runs out of memory
    error = run.error("huge_in")
    assert error["ename"] == "OutOfMemoryError", error["evalue"]
    assert "ran out of its 128 MiB memory limit" in error["evalue"]


# ---------------------------------------------------------------------- management
def test_status_lists_the_running_session(run: Run):
    status = run.stdout("status")
    # the 200 MiB session is listed; the one killed for memory is gone
    assert re.search(r"^kern\s+200 MiB\s+[0-9a-f]{12}\s+\d+", status, re.M), status
    assert "128 MiB" not in status


def test_stop_all_removes_the_session_containers(run: Run):
    assert "stopped 1 container kernel" in run.stdout("stop")
    assert run.snapshots["stop"] == []


def test_execute_runs_a_whole_notebook_like_the_command_line(run: Run, magics_project: Path):
    # when a notebook runs another one in the environment
    import nbformat

    assert "output notebook: child.out.ipynb" in run.stdout("execute")
    out = nbformat.read(magics_project / "child.out.ipynb", 4)
    # then its parameter was injected and its code ran in the container as the non-root user
    assert out.cells[2].outputs[0]["text"] == "42 1000\n"
    assert out.metadata["jupyter_containers"]["environment"] == "kern"
    # and the command line's usage errors come back as IPython usage errors, naming what is missing
    text = "".join(o.get("text", "") for o in run.outputs("execute_usage"))
    assert "the following arguments are required: --env" in text
    assert "UsageError" in text


def test_reschedule_off_a_swarm_is_refused_naming_where_it_runs(run: Run, magics_project: Path):
    # when a notebook asks to reschedule a run of an environment on the local engine
    error = run.error("execute_reschedule")
    # then it is refused as the command line refuses it, naming where it runs, before anything runs
    assert error["ename"] == "RequestError"
    assert error["evalue"].startswith("--reschedule: 'kern' runs on the local engine, not on a swarm; ")
    assert 'kind = "swarm"' in error["evalue"]
    assert not (magics_project / "rescheduled.ipynb").exists()
    # and a %%container cell does not take it: its session kernel is never rescheduled
    shown = [(o["output_type"], o.get("name"), o.get("text")) for o in run.outputs("cell_reschedule")]
    assert shown == [("stream", "stderr", "UsageError: unrecognized arguments: --reschedule\n")]


def test_execute_with_sweeps_runs_each_combination_and_prints_the_summary(run: Run, magics_project: Path):
    # when a notebook runs a sweep of another one, two combinations at once
    import nbformat

    lines = [line.split() for line in run.stdout("execute_sweep").splitlines()]
    # then the cell shows the command line's summary table, one row per combination
    assert lines[0] == ["n", "STATUS", "TIME", "OUTPUT"], lines
    assert [(row[0], row[1], row[3]) for row in lines[1:3]] == [
        ("1", "completed", "sweep-out/child-n=1.ipynb"),
        ("2", "completed", "sweep-out/child-n=2.ipynb"),
    ]
    assert lines[3] == "sweep: 2 of 2 jobs completed, at most 2 at once".split()
    # and each output notebook is named by its parameter and ran it in the container
    for n in (1, 2):
        out = nbformat.read(magics_project / "sweep-out" / f"child-n={n}.ipynb", 4)
        assert out.cells[2].outputs[0]["text"] == f"{n * 2} 1000\n"


def test_sessions_are_removed_when_the_local_kernel_shuts_down(run: Run):
    # given a session started after the stop, running when the notebook finished
    assert run.stdout("fresh") == "fresh session False\n"
    assert len(run.snapshots["fresh"]) == 1
    # then the local kernel's shutdown removed it
    deadline = time.monotonic() + 10
    while session_containers(run.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert session_containers(run.pid) == []


# ---------------------------------------------------------------------- interrupt
def test_interrupting_the_local_kernel_stops_the_remote_cell(magics_project: Path, kern_image: str):
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", cwd=str(magics_project))
    try:

        def execute(code: str) -> tuple[str, list[dict]]:
            errors: list[dict] = []
            reply = kc.execute_interactive(
                code,
                output_hook=lambda msg: errors.append(msg["content"]) if msg["msg_type"] == "error" else None,
                timeout=90,
            )
            return reply["content"]["status"], errors

        # given a warm session
        assert execute("%load_ext jupyter_containers")[0] == "ok"
        assert execute("%%container kern --memory 200m\npass")[0] == "ok"
        # when the local kernel is interrupted while the container sleeps
        threading.Timer(3.0, km.interrupt_kernel).start()
        started = time.monotonic()
        status, errors = execute("%%container kern --memory 200m\nimport time\ntime.sleep(60)")
        elapsed = time.monotonic() - started
        # then the cell ends with KeyboardInterrupt soon after, showing where the container code was
        assert status == "error"
        assert errors[0]["ename"] == "KeyboardInterrupt", errors
        assert "time.sleep(60)" in ANSI.sub("", "\n".join(errors[0]["traceback"]))
        assert elapsed < 10
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)


# ---------------------------------------------------------------------- crash leftovers
def _manager(root: Path):
    from jupyter_containers.config import load_config
    from jupyter_containers.manager import ContainersManager

    return ContainersManager(spec_path=root / "containers.toml", config=load_config(root))


def _name(manager, container_id: str) -> str:
    return next(c.name for c in manager.backend.list_containers(all=True) if c.id == container_id)


def test_prune_removes_a_session_whose_kernel_crashed(magics_project: Path, kern_image: str):
    # given a process that started a session and was killed before it could remove it
    code = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from jupyter_containers.config import load_config
        from jupyter_containers.manager import ContainersManager
        from jupyter_containers.kernel.pool import get_pool
        root = Path({str(magics_project)!r})
        manager = ContainersManager(spec_path=root / "containers.toml", config=load_config(root))
        session = get_pool().get_or_start("kern", manager=manager)
        print(session.container_id, session.socket_dir, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip(), proc.stderr
    container_id, socket_dir = proc.stdout.split()
    manager = _manager(magics_project)
    try:
        # when prune looks (a dry run: other containers and images on this engine are not this test's)
        removed = manager.prune(dry_run=True)
        # then the leftover is among what it removes
        assert _name(manager, container_id) in removed["containers"]
    finally:
        manager.backend.remove_container(container_id)
        shutil.rmtree(socket_dir, ignore_errors=True)


def test_prune_keeps_a_session_whose_kernel_is_alive(magics_project: Path, kern_image: str):
    from jupyter_containers.kernel.pool import get_pool

    manager = _manager(magics_project)
    # given a session of this (living) process
    session = get_pool().get_or_start("kern", manager=manager)
    try:
        # when prune looks
        removed = manager.prune(dry_run=True)
        # then the session is not touched
        assert _name(manager, session.container_id) not in removed["containers"]
    finally:
        session.stop()


# ---------------------------------------------------------------------- spare kernels at exit
#: Run in the notebook's kernel before the extension loads: the pool's spare holds in its image check until the
#: pool closes (the kernel's exit), so that its start is under way then whatever the timing; ``reached`` says it is.
HOLD_THE_SPARE = """
import threading, time
from jupyter_containers.kernel.pool import get_pool
from jupyter_containers.manager import ContainersManager
reached, _build = threading.Event(), ContainersManager.build
def _held(self, *args, **kwargs):
    if threading.current_thread().name == "jupyter-containers-pool":
        reached.set()
        while not get_pool().closed:
            time.sleep(0.01)
    return _build(self, *args, **kwargs)
ContainersManager.build = _held
"""


def test_a_spare_starting_when_the_local_kernel_exits_is_cancelled(tmp_path: Path, kern_image: str):
    """The notebook's kernel exits while the pool starts a spare (c.ContainerSessions.pool): the start gives up
    instead of scheduling a kernel start on the interpreter's stopped thread pools (which logged 'cannot
    schedule new futures after interpreter shutdown'), and no container is left. Real local kernel, engine and
    shutdown; only the spare's image check is held (HOLD_THE_SPARE) to put the start under way at exit."""
    from jupyter_client.manager import KernelManager

    pool = "c.ContainerSessions.pool = {'kern': {'size': 1, 'memory': '200m'}}\n"
    root = make_workspace(tmp_path, SPEC, config=CONFIG + pool)
    log = tmp_path / "kernel.log"
    with log.open("wb") as out:
        km = KernelManager(kernel_name="python3")
        km.start_kernel(cwd=str(root), stdout=out, stderr=out)
    process = km.provisioner.process
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)

        def text(code: str) -> str:
            return stream_text(kc, code)

        # given a spare whose start is under way
        text(HOLD_THE_SPARE)
        pid = int(text("%load_ext jupyter_containers\nimport os\nprint(os.getpid())"))
        assert text("print(reached.wait(60))") == "True\n"
    finally:
        # when the notebook's kernel shuts down
        kc.stop_channels()
        km.shutdown_kernel(now=False)
    # then it exited by itself, with no error, and left no container
    assert process.wait(timeout=30) == 0
    errors = [line for line in log.read_text().splitlines() if "over TCP without encryption" not in line]
    assert errors == []
    assert session_containers(pid) == []
