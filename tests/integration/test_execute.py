"""Whole-notebook runs in a container (``execute``, the installed kernelspec, papermill), on the real engine."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from jupyter_containers.jobs.parameters import inject_parameters, parse_parameter_value
from jupyter_containers.jobs.runner import ExecuteRequest, execute_notebook
from jupyter_containers.manager import ContainersManager
from jupyter_containers.spec.model import Resources

from ..notebooks import stdout_of, write_notebook
from ..workspace import make_workspace

pytestmark = pytest.mark.engine

BIN = Path(sys.executable).parent
KERNEL_NAME = "jct-test-nbenv"

SPEC = """
[environments.nbenv]
description = "notebook jobs under test"
pip = ["six"]

[environments.nbenv.resources]
memory = "256m"
"""

#: Read by the CLI and by the provisioner of installed kernelspecs (they load the project's config).
CONFIG = "c.Builder.image_repository = 'jupyter-containers-test/{env}'\n"

#: The memory limit as the kernel's cgroup reports it (v1 on this engine, v2 elsewhere).
CGROUP_MEMORY = (
    "from pathlib import Path\n"
    "v1 = Path('/sys/fs/cgroup/memory/memory.limit_in_bytes')\n"
    "print((v1 if v1.exists() else Path('/sys/fs/cgroup/memory.max')).read_text().strip())"
)


@pytest.fixture(scope="session")
def nbproject(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("nbproject")
    make_workspace(root, SPEC, config=CONFIG)
    return root


@pytest.fixture(scope="session")
def nbenv(nbproject: Path, engine_config):
    """The environment's image, built once; its build result."""
    from jupyter_containers.manager import ContainersManager

    return ContainersManager(spec_path=nbproject / "containers.toml", config=engine_config).build("nbenv")


def unmarked(nb) -> list:
    """The notebook's cells without the error markers a run that did not complete adds (see jobs/report.py)."""
    return [c for c in nb.cells if "papermill-error-cell-tag" not in c.metadata.get("tags", [])]


def run(nbproject: Path, notebook: Path, *, cancel: threading.Event | None = None, **request):
    """Execute ``notebook`` in nbenv; ``request`` holds the other ExecuteRequest fields."""
    lines: list[str] = []
    manager = ContainersManager.discover(nbproject / "containers.toml")
    result = execute_notebook(
        ExecuteRequest(notebook, "nbenv", **request), manager=manager, log=lines.append, cancel=cancel
    )
    return result, "\n".join(lines), nbformat.read(result.output_path, as_version=4)


# ---------------------------------------------------------------------- parameters (no engine needed)
def test_papermill_typing_of_command_line_values():
    # given the strings a shell passes
    values = ["300", "0.5", "True", "None", "1e3", "hello", "3 apples"]
    # when they are typed like papermill's -p
    typed = [parse_parameter_value(v) for v in values]
    # then numbers, booleans and None are Python values and the rest stays text
    assert typed == [300, 0.5, True, None, 1000.0, "hello", "3 apples"]


def test_a_rerun_replaces_the_injected_parameters_cell():
    # given a notebook already parameterized once
    nb = new_notebook(cells=[new_markdown_cell("# t"), new_code_cell("x = 1", metadata={"tags": ["parameters"]})])
    inject_parameters(nb, {"x": 2})
    # when it is parameterized again
    index = inject_parameters(nb, {"x": 3, "name": "a'b"})
    # then there is still one injected cell, right after the parameters cell, with the new values
    tags = [c.metadata.get("tags") for c in nb.cells]
    assert tags == [None, ["parameters"], ["injected-parameters"]]
    assert index == 2
    assert nb.cells[2].source == '# Parameters\nx = 3\nname = "a\'b"'


# ---------------------------------------------------------------------- execute_notebook
def test_parameters_are_injected_after_the_parameters_cell_and_used(nbproject, nbenv):
    # given a notebook with a cell tagged parameters
    notebook = write_notebook(
        nbproject / "params.ipynb", "pre = 'set before'", ("x = 1", ["parameters"]), "print(x * 2)"
    )
    # when it is executed with x = 21
    result, _, out = run(nbproject, notebook, parameters={"x": 21})
    # then the value sits in an injected-parameters cell after the parameters cell, and the code used it
    assert result.status == "completed", result.error
    assert [c.metadata.get("tags", []) for c in out.cells] == [[], ["parameters"], ["injected-parameters"], []]
    assert out.cells[2].source == "# Parameters\nx = 21"
    assert stdout_of(out.cells[3]) == "42\n"
    assert out.metadata.papermill.parameters == {"x": 21}
    assert result.output_path == nbproject / "params.out.ipynb"


def test_the_output_notebook_records_the_environment_it_ran_in(nbproject, nbenv):
    # given a notebook and a per-run memory override
    notebook = write_notebook(nbproject / "record.ipynb", "import six")
    # when it is executed
    result, _, out = run(nbproject, notebook, resources=Resources(memory=200 << 20), parameters={"n": 1})
    # then its metadata names the spec, the lock, the image and the effective limits of the run
    record = out.metadata.jupyter_containers
    assert result.status == record.status == "completed"
    assert record.environment == "nbenv"
    assert record.spec_file == str(nbproject / "containers.toml")
    assert record.spec == {
        "description": "notebook jobs under test",
        "pip": ["six"],
        "resources": {"memory": 256 << 20},
    }
    assert record.image == nbenv.image and record.image_id == nbenv.image_id
    assert record.lock["image_id"] == nbenv.image_id
    assert any(p.startswith("six==") for p in record.lock["packages"])
    assert record.resources == {"memory": 200 << 20}
    assert record.parameters == {"n": 1}
    assert record.started <= record.finished


def test_a_kernel_that_cannot_be_set_up_leaves_the_run_failed_not_running(nbproject, nbenv, engine_config):
    # given a setting the kernel manager refuses (a word where a number of seconds belongs)
    import copy

    from traitlets import TraitError

    config = copy.deepcopy(engine_config)
    config.AsyncContainerKernelManager.shutdown_wait_time = "soon"
    manager = ContainersManager(spec_path=nbproject / "containers.toml", config=config)
    notebook = write_notebook(nbproject / "unmade.ipynb", "print(1)")
    # when the notebook is executed, then the error reaches the caller
    with pytest.raises(TraitError, match="shutdown_wait_time"):
        execute_notebook(ExecuteRequest(notebook, "nbenv"), manager=manager, log=lambda _line: None)
    # and the output notebook's record says how the run ended, not "running"
    record = nbformat.read(nbproject / "unmade.out.ipynb", as_version=4).metadata.jupyter_containers
    assert record.status == "failed", record
    assert "the kernel could not be set up: TraitError: " in json.dumps(dict(record))


def test_cells_run_in_the_container_under_the_run_limits(nbproject, nbenv):
    # given a notebook asking where it runs
    notebook = write_notebook(nbproject / "where.ipynb", "import os; print(os.getuid())", CGROUP_MEMORY)
    # when it is executed with 192 MiB
    _, _, out = run(nbproject, notebook, resources=Resources(memory=192 << 20))
    # then it ran as the container's user, under that memory limit
    assert stdout_of(out.cells[0]) == "1000\n"
    assert stdout_of(out.cells[1]) == f"{192 << 20}\n"


def test_a_failing_cell_stops_the_run_and_keeps_earlier_outputs_and_the_error(nbproject, nbenv):
    # given a notebook whose second cell raises
    notebook = write_notebook(
        nbproject / "fails.ipynb", "print('before')", "def f():\n    raise ValueError('boom')\nf()", "print('after')"
    )
    # when it is executed
    result, log, out = run(nbproject, notebook)
    # then the run failed with the remote error, printed with its traceback
    assert result.status == "failed"
    assert (result.error["ename"], result.error["evalue"], result.error["cell_index"]) == ("ValueError", "boom", 1)
    assert "cell 1 (In [2]) raised ValueError: boom" in log
    assert "raise ValueError('boom')" in log  # the remote traceback, with the failing line
    # and the output notebook keeps the first cell's output and the error, and nothing ran after it
    cells = unmarked(out)
    assert stdout_of(cells[0]) == "before\n"
    assert [(o.output_type, o.get("ename")) for o in cells[1].outputs] == [("error", "ValueError")]
    assert cells[2].outputs == []
    assert out.metadata.jupyter_containers.status == "failed"
    assert out.metadata.jupyter_containers.error["ename"] == "ValueError"


def test_a_failed_run_is_marked_at_the_top_of_its_output_and_a_rerun_refreshes_the_markers(nbproject, nbenv):
    # given a notebook whose second cell raises
    notebook = write_notebook(nbproject / "marked.ipynb", "print('before')", "1 / 0", "print('after')")
    # when it is executed
    _, _, out = run(nbproject, notebook)
    # then, as papermill does, a top cell links to an anchor cell placed just before the failing cell
    tags = [c.metadata.get("tags", []) for c in out.cells]
    assert tags == [["papermill-error-cell-tag"], [], ["papermill-error-cell-tag"], [], []]
    assert 'href="#papermill-error-cell">In [2]</a>' in out.cells[0].source
    assert "ZeroDivisionError: division by zero" in out.cells[0].source
    assert 'id="papermill-error-cell"' in out.cells[2].source
    assert out.cells[3].outputs[0].ename == "ZeroDivisionError"
    # when the output notebook, fixed, is run again
    out.cells[3].source = "print('fixed')"
    nbformat.write(out, nbproject / "marked-fixed.ipynb")
    result, _, again = run(nbproject, nbproject / "marked-fixed.ipynb")
    # then the stale markers are gone
    assert result.status == "completed", result.error
    assert [stdout_of(c) for c in again.cells] == ["before\n", "fixed\n", "after\n"]


@pytest.mark.parametrize("exit_call", ["import sys; sys.exit()", "import sys; sys.exit(0)", "raise SystemExit"])
def test_sys_exit_with_no_or_zero_code_ends_the_run_successfully(nbproject, nbenv, exit_call):
    # given a notebook that exits in its second cell (as papermill users stop a notebook early)
    notebook = write_notebook(nbproject / "exits.ipynb", "print('ran')", exit_call, "print('not run')")
    # when it is executed
    result, log, out = run(nbproject, notebook)
    # then the run completed there: the later cell did not run, and no error is recorded or marked
    assert result.status == "completed", result.error
    assert result.error is None and out.metadata.papermill.exception is False
    assert stdout_of(out.cells[0]) == "ran\n"
    assert out.cells[2].outputs == []
    assert len(out.cells) == 3  # no error markers
    assert "called sys.exit" in log


def test_sys_exit_with_a_nonzero_code_fails_the_run(nbproject, nbenv):
    notebook = write_notebook(nbproject / "exits-3.ipynb", "import sys; sys.exit(3)", "print('not run')")
    result, _, out = run(nbproject, notebook)
    assert result.status == "failed"
    assert (result.error["ename"], result.error["evalue"]) == ("SystemExit", "3")
    assert out.metadata.papermill.exception is True


def test_a_notebook_for_another_language_is_refused_before_anything_runs(nbproject, nbenv):
    # given a notebook whose kernelspec is R
    notebook = write_notebook(nbproject / "analysis-r.ipynb", "x <- 1", "print(x)")
    nb = nbformat.read(notebook, 4)
    nb.metadata.kernelspec = {"name": "ir", "display_name": "R", "language": "R"}
    nbformat.write(nb, notebook)
    # when the execute command is asked to run it with a parameter
    proc = subprocess.run(
        [BIN / "jupyter-containers", "execute", notebook.name, "--env", "nbenv", "-p", "x", "2"],
        cwd=nbproject,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # then it refuses, saying why, and writes no output notebook
    assert proc.returncode != 0
    assert "analysis-r.ipynb is written in R (metadata.kernelspec.language = 'R')" in proc.stderr
    assert "provides a Python kernel (ipykernel) only" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (nbproject / "analysis-r.out.ipynb").exists()


def test_a_run_stopped_by_its_timeout_keeps_its_partial_output(nbproject, nbenv):
    # given a notebook that would sleep for a minute
    notebook = write_notebook(
        nbproject / "slow.ipynb", "print('started')", "import time\nprint('sleeping', flush=True)\ntime.sleep(60)", "1"
    )
    started = time.monotonic()
    # when it runs with an 8 s timeout (room for a slow kernel start on a busy machine)
    result, log, out = run(nbproject, notebook, timeout=8)
    # then it was stopped soon after, said why, and the output notebook has what ran until then
    assert time.monotonic() - started < 40
    assert result.status == "timed out", result.error
    assert result.error["message"] == "timed out after 8s"
    assert "timed out after 8s" in log
    cells = unmarked(out)
    assert stdout_of(cells[0]) == "started\n"
    assert "sleeping\n" in stdout_of(cells[1])
    assert cells[2].outputs == []
    assert "stopped at" in out.cells[0].source and "timed out after 8s" in out.cells[0].source
    assert out.metadata.jupyter_containers.status == "timed out"


def test_a_run_in_a_worker_thread_can_be_cancelled(nbproject, nbenv):
    # given a slow notebook run from a plain thread (as a job queue would), and a cancel switch
    notebook = write_notebook(nbproject / "job.ipynb", "print('started')", "import time\ntime.sleep(60)")
    cancel = threading.Event()
    results = []
    worker = threading.Thread(target=lambda: results.append(run(nbproject, notebook, cancel=cancel)))
    worker.start()
    # when the switch is flipped while the second cell sleeps
    output, deadline = nbproject / "job.out.ipynb", time.monotonic() + 60
    while time.monotonic() < deadline and not (output.exists() and stdout_of(nbformat.read(output, 4).cells[0])):
        time.sleep(0.2)
    cancel.set()
    worker.join(60)
    # then the run stopped as cancelled, with the first cell's output kept
    result, _, out = results[0]
    assert result.status == "cancelled"
    assert stdout_of(unmarked(out)[0]) == "started\n"
    assert out.metadata.jupyter_containers.status == "cancelled"


def test_a_kernel_killed_for_memory_says_which_limit(nbproject, nbenv):
    # given a notebook that allocates more than its limit
    notebook = write_notebook(
        nbproject / "oom.ipynb", "print('ok')", "x = bytearray(600 * 2**20); x[::4096] = b'1' * len(x[::4096])"
    )
    # when it runs with 192 MiB
    result, log, out = run(nbproject, notebook, resources=Resources(memory=192 << 20))
    # then the run failed, naming the memory limit, and the earlier output is kept
    assert result.status == "failed"
    assert "the kernel died while running cell 1" in result.error["message"]
    assert "ran out of its 192 MiB memory limit" in result.error["message"]
    assert "ran out of its 192 MiB memory limit" in log
    assert stdout_of(unmarked(out)[0]) == "ok\n"


# ---------------------------------------------------------------------- the CLI
def test_cli_execute_runs_the_notebook_and_prints_where_the_output_is(nbproject, nbenv):
    # given a parameterized notebook
    notebook = write_notebook(nbproject / "cli.ipynb", ("n = 0", ["parameters"]), "print(n + 1)")
    output = nbproject / "cli-result.ipynb"
    # when the execute command runs it with -p and -r parameters and a limit
    proc = subprocess.run(
        [BIN / "jupyter-containers", "execute", notebook.name, "--env", "nbenv", "-p", "n", "41", "-r", "tag", "7"]
        + ["-o", output.name, "--memory", "300m"],
        cwd=nbproject,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # then it succeeds, says where the output notebook is, and the values were typed as asked
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"output notebook: {output.name}"
    out = nbformat.read(output, as_version=4)
    assert out.cells[1].source == "# Parameters\nn = 41\ntag = '7'"
    assert stdout_of(out.cells[2]) == "42\n"
    assert out.metadata.jupyter_containers.resources["memory"] == 300 << 20


def test_cli_execute_exits_1_and_prints_the_cell_error(nbproject, nbenv):
    # given a notebook that raises
    notebook = write_notebook(nbproject / "cli-fails.ipynb", "print('fine')", "1 / 0")
    # when the execute command runs it (from another folder, the spec named with -f)
    proc = subprocess.run(
        [
            BIN / "jupyter-containers",
            "execute",
            str(notebook),
            "--env",
            "nbenv",
            "-f",
            str(nbproject / "containers.toml"),
        ],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=300,
    )
    # then it exits 1 with the error on stderr, and still says where the (partial) output notebook is
    assert proc.returncode == 1
    assert "ZeroDivisionError: division by zero" in proc.stderr
    assert str(nbproject / "cli-fails.out.ipynb") in proc.stdout
    out = nbformat.read(nbproject / "cli-fails.out.ipynb", as_version=4)
    assert stdout_of(out.cells[1]) == "fine\n"  # after the error marker at the top


def execute_cli(nbproject: Path, *args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BIN / "jupyter-containers", "execute", *map(str, args)],
        cwd=nbproject,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_execute_takes_papermills_yaml_base64_and_file_parameters(nbproject, nbenv):
    import base64

    # given a notebook printing structured parameters, and a YAML file of parameters
    notebook = write_notebook(
        nbproject / "yaml-params.ipynb",
        ("sizes = []\ncfg = {}\nlabel = ''\nn = 0", ["parameters"]),
        "print(sum(sizes), cfg['model']['depth'], label, n)",
    )
    (nbproject / "params.yaml").write_text("sizes: [1, 2, 3]\ncfg:\n  model: {depth: 4}\nlabel: from-file\n")
    encoded = base64.b64encode(b"n: 5\n").decode()
    # when execute gets them with papermill's long names and short -y/-b (papermill's -f is --parameters-file)
    proc = execute_cli(
        nbproject,
        notebook.name,
        "--env",
        "nbenv",
        "--parameters_file",
        "params.yaml",
        "-y",
        "label: from-yaml",
        "-b",
        encoded,
    )
    # then lists and dicts reached the notebook as Python values
    assert proc.returncode == 0, proc.stderr
    out = nbformat.read(nbproject / "yaml-params.out.ipynb", as_version=4)
    assert stdout_of(out.cells[2]) == "6 4 from-yaml 5\n"
    assert out.metadata.papermill.parameters["cfg"] == {"model": {"depth": 4}}


def test_cli_execute_f_with_a_yaml_file_says_to_use_parameters_file(nbproject, nbenv):
    # given a papermill habit: -f for a parameters file
    notebook = write_notebook(nbproject / "habit.ipynb", ("x = 0", ["parameters"]), "print(x)")
    (nbproject / "habit.yaml").write_text("x: 1\n")
    # when execute gets it as -f
    proc = execute_cli(nbproject, notebook.name, "--env", "nbenv", "-f", "habit.yaml")
    # then it says what -f is here and which option to use, instead of "invalid TOML"
    assert proc.returncode != 0
    assert "-f names the spec file" in proc.stderr and "use --parameters-file habit.yaml" in proc.stderr
    assert "TOML" not in proc.stderr


def test_cli_execute_warns_when_parameters_go_to_a_notebook_without_a_parameters_cell(nbproject, nbenv):
    notebook = write_notebook(nbproject / "untagged.ipynb", "x = 0", "print(x)")
    proc = execute_cli(nbproject, notebook.name, "--env", "nbenv", "-p", "x", "1", "-q")
    assert proc.returncode == 0, proc.stderr
    assert "warning: the notebook has no cell tagged 'parameters'" in proc.stderr


def test_cli_execute_report_mode_hides_the_code_and_keeps_the_outputs(nbproject, nbenv):
    notebook = write_notebook(nbproject / "report.ipynb", ("x = 0", ["parameters"]), "print(x + 1)")
    proc = execute_cli(nbproject, notebook.name, "--env", "nbenv", "-p", "x", "1", "--report-mode")
    assert proc.returncode == 0, proc.stderr
    out = nbformat.read(nbproject / "report.out.ipynb", as_version=4)
    assert [c.metadata.get("jupyter", {}).get("source_hidden") for c in out.cells] == [True, True, True]
    assert stdout_of(out.cells[2]) == "2\n"


def test_cli_execute_cwd_runs_the_kernel_in_that_workspace_folder(nbproject, nbenv, tmp_path):
    # given a notebook printing its working folder, and a subfolder of the workspace
    notebook = write_notebook(nbproject / "where-cwd.ipynb", "import os; print(os.getcwd())")
    (nbproject / "data" / "raw").mkdir(parents=True, exist_ok=True)
    # when execute runs it with --cwd there
    proc = execute_cli(nbproject, notebook.name, "--env", "nbenv", "--cwd", "data/raw")
    # then the kernel ran in the matching folder of /workspace
    assert proc.returncode == 0, proc.stderr
    out = nbformat.read(nbproject / "where-cwd.out.ipynb", as_version=4)
    assert stdout_of(out.cells[0]) == "/workspace/data/raw\n"
    # and a folder the container cannot see is refused
    proc = execute_cli(nbproject, notebook.name, "--env", "nbenv", "--cwd", str(tmp_path))
    assert proc.returncode != 0 and "is outside the workspace" in proc.stderr


# ---------------------------------------------------------------------- installed kernelspec, papermill
@pytest.fixture(scope="module")
def installed_kernel(nbproject, nbenv):
    """``kernelspec install`` into this Python's prefix; removed afterwards."""
    proc = subprocess.run(
        [BIN / "jupyter-containers", "kernelspec", "install", "nbenv", "--sys-prefix", "--name", KERNEL_NAME],
        cwd=nbproject,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    yield KERNEL_NAME
    subprocess.run([BIN / "jupyter", "kernelspec", "remove", "-y", KERNEL_NAME], capture_output=True, timeout=60)


def test_the_installed_kernelspec_is_listed_and_runs_cells_in_the_container(nbproject, installed_kernel):
    from nbclient import NotebookClient

    # given the installed kernelspec
    listed = subprocess.run(
        [BIN / "jupyter", "kernelspec", "list", "--json"], capture_output=True, text=True, timeout=60
    ).stdout
    assert installed_kernel in json.loads(listed)["kernelspecs"]
    # when plain nbclient runs a notebook with it
    nb = nbformat.read(write_notebook(nbproject / "plain.ipynb", "import os; print(os.getuid())", CGROUP_MEMORY), 4)
    NotebookClient(nb, kernel_name=installed_kernel, resources={"metadata": {"path": str(nbproject)}}).execute()
    # then the cells ran in the container, under the spec's memory limit
    assert stdout_of(nb.cells[0]) == "1000\n"
    assert stdout_of(nb.cells[1]) == f"{256 << 20}\n"


def test_papermill_runs_through_the_provisioner(nbproject, installed_kernel):
    import papermill

    # given a parameterized notebook
    notebook = write_notebook(nbproject / "pm.ipynb", ("x = 0", ["parameters"]), "import os; print(x * 2, os.getuid())")
    # when papermill executes it with the container kernel
    papermill.execute_notebook(
        str(notebook),
        str(nbproject / "pm.out.ipynb"),
        kernel_name=installed_kernel,
        parameters={"x": 7},
        cwd=str(nbproject),
        progress_bar=False,
    )
    # then the injected value was used, in the container
    out = nbformat.read(nbproject / "pm.out.ipynb", as_version=4)
    assert stdout_of(out.cells[2]) == "14 1000\n"


def test_papermill_cwd_is_the_container_kernels_working_folder(nbproject, installed_kernel, tmp_path, caplog):
    import papermill

    # given a notebook printing its working folder, and a subfolder of the workspace
    notebook = write_notebook(nbproject / "pm-cwd.ipynb", "import os; print(os.getcwd())")
    (nbproject / "sub").mkdir(exist_ok=True)
    # when papermill runs it with cwd= that subfolder (papermill changes the process's folder, passes no cwd)
    papermill.execute_notebook(
        str(notebook),
        str(nbproject / "pm-cwd.out.ipynb"),
        kernel_name=installed_kernel,
        cwd=str(nbproject / "sub"),
        progress_bar=False,
    )
    # then the kernel ran in the matching folder of /workspace, as a local kernel would run in it
    out = nbformat.read(nbproject / "pm-cwd.out.ipynb", as_version=4)
    assert stdout_of(out.cells[0]) == "/workspace/sub\n"
    # when the folder is outside the workspace
    caplog.set_level("WARNING")
    papermill.execute_notebook(
        str(notebook),
        str(nbproject / "pm-cwd.out.ipynb"),
        kernel_name=installed_kernel,
        cwd=str(tmp_path),
        progress_bar=False,
    )
    # then the kernel starts in /workspace, and a warning says why
    out = nbformat.read(nbproject / "pm-cwd.out.ipynb", as_version=4)
    assert stdout_of(out.cells[0]) == "/workspace\n"
    assert f"the working folder {tmp_path} is outside the workspace" in caplog.text


# ---------------------------------------------------------------------- notebooks written with %%container cells
def test_a_notebook_of_container_cells_runs_as_a_whole_in_that_environment(nbproject, nbenv):
    """A notebook whose work is in `%%container nbenv` cells (written in a local kernel) runs as a job in nbenv:
    the extension loads in the container kernel, and those cells run in place, sharing its variables."""
    notebook = write_notebook(
        nbproject / "container-cells.ipynb",
        "%load_ext jupyter_containers",
        "%%container nbenv --memory 2g --in df\nanswer = 41",
        "print(answer + 1)",
    )
    result, log, nb = run(nbproject, notebook)
    assert result.status == "completed", (result.error, log)
    assert stdout_of(nb.cells[2]) == "42\n"
    note = "".join(o.get("text", "") for o in nb.cells[1].outputs if o.get("name") == "stderr")
    assert "runs in place" in note and "--memory 2g" in note


def test_a_container_cell_of_another_environment_fails_the_run_saying_why(nbproject, nbenv):
    notebook = write_notebook(
        nbproject / "other-env.ipynb", "%load_ext jupyter_containers", "%%container analysis\nprint('never')"
    )
    result, _, nb = run(nbproject, notebook)
    assert result.status == "failed"
    assert "cannot start another environment's container" in result.error["message"]
    assert "never" not in stdout_of(unmarked(nb)[1])


# ---------------------------------------------------------------------- the client's ZMQ context
def test_a_kernel_manager_that_cannot_be_made_leaves_no_zmq_context(nbenv, tmp_path, monkeypatch):
    """The kernel manager's constructor refuses the project's config: the run fails naming the setting, and the
    ZMQ context made for its client is destroyed (it leaked). The contexts are watched through a spy around
    the real ``fast_reconnect_context``."""
    from traitlets import TraitError

    from jupyter_containers.kernel import session

    made: list = []
    real = session.fast_reconnect_context
    monkeypatch.setattr(session, "fast_reconnect_context", lambda *args: made.append(real(*args)) or made[-1])
    # given a project whose config gives the kernel manager a value it refuses
    root = make_workspace(tmp_path, SPEC, config=CONFIG + "c.KernelManager.shutdown_wait_time = 'soon'\n")
    notebook = write_notebook(root / "nb.ipynb", "print('never runs')")
    # when it is executed
    with pytest.raises(TraitError, match="shutdown_wait_time"):
        run(root, notebook)
    # then the context made for the client is closed
    assert len(made) == 1
    assert made[0].closed
