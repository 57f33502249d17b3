"""The command line as a user types it, against the real engine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.engine


def cli(project: Path, *args: str, check: bool = False) -> subprocess.CompletedProcess:
    (project / "jupyter_containers_config.py").write_text(
        "c.Builder.image_repository = 'jupyter-containers-test/{env}'\n"
    )
    return subprocess.run(
        [sys.executable, "-m", "jupyter_containers.cli", *args],
        cwd=project,
        capture_output=True,
        text=True,
        check=check,
        timeout=600,
    )


def test_build_json_reports_the_cached_image(project, small_image):
    result = cli(project, "build", "small", "--json", "-q")
    data = json.loads(result.stdout)
    assert result.returncode == 0
    assert data["image"] == small_image.image
    assert data["built"] is False
    assert data["seconds"] < 5


def test_run_propagates_the_exit_code_and_output(project, small_image):
    result = cli(project, "run", "small", "--memory", "128m", "--", "sh", "-c", "echo hi; echo oops >&2; exit 5")
    assert result.returncode == 5
    assert result.stdout == "hi\n"
    assert result.stderr.startswith("oops\n")
    assert "(1 CPU, 128 MiB)" in result.stderr  # the summary line says what ran and with which limits


def test_run_timeout_exits_124_with_a_message(project, small_image):
    result = cli(project, "run", "small", "--timeout", "1s", "-q", "--", "sleep", "30")
    assert result.returncode == 124
    assert "ran longer than its 1s timeout" in result.stderr
    assert "Traceback" not in result.stderr


def test_images_lists_only_ours(project, small_image):
    result = cli(project, "images", "--json", check=True)
    images = json.loads(result.stdout)
    assert images and all(i["labels"]["io.jupyter.containers.managed"] == "true" for i in images)
    assert any(small_image.image in i["tags"] for i in images)


def test_prune_dry_run_keeps_the_newest_image(project, small_image):
    result = cli(project, "prune", "--dry-run", check=True)
    assert small_image.image not in result.stdout
    assert result.stdout.startswith("would remove")


def test_engine_reports_version_and_gpu_runtimes(project):
    info = json.loads(cli(project, "engine", "--json", check=True).stdout)
    assert info["version"] and info["storage_driver"]
    assert info["gpu_runtimes"] == []  # no GPU runtime on this machine


def test_engine_unreachable_says_what_to_do(project, tmp_path):
    (project / "jupyter_containers_config.py").write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "jupyter_containers.cli", "engine"],
        cwd=project,
        capture_output=True,
        text=True,
        env={"DOCKER_HOST": f"unix://{tmp_path}/nothing.sock", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 1
    assert "no Docker engine answers" in result.stderr and "DOCKER_HOST" in result.stderr


def test_import_then_build_from_a_binder_folder(tmp_path):
    # given a repo2docker-style binder/ folder
    binder = tmp_path / "binder"
    binder.mkdir()
    (binder / "requirements.txt").write_text("six==1.16.0\n")
    (binder / "apt.txt").write_text("less\n")
    (binder / "postBuild").write_text("#!/bin/sh\necho post-build ran > /tmp/marker\n")
    tmp_path.chmod(0o755)
    # when it is imported and built
    cli(tmp_path, "import", ".", "-o", "containers.toml", "--name", "binderenv", check=True)
    built = json.loads(cli(tmp_path, "build", "binderenv", "--json", "-q", check=True).stdout)
    # then the image has what the binder folder asked for
    result = cli(
        tmp_path,
        "run",
        "binderenv",
        "-q",
        "--",
        "sh",
        "-c",
        "python -c 'import six; print(six.__version__)'; which less; cat /tmp/marker",
    )
    assert built["built"] is True
    assert result.stdout.split() == ["1.16.0", "/usr/bin/less", "post-build", "ran"]


def test_prune_removes_superseded_environment_images(tmp_path):
    # given an environment built, then changed and built again
    tmp_path.chmod(0o755)
    (tmp_path / "containers.toml").write_text('[environments.prunable]\nenv = { V = "1" }\n')
    old = json.loads(cli(tmp_path, "build", "prunable", "--json", "-q", check=True).stdout)["image"]
    (tmp_path / "containers.toml").write_text('[environments.prunable]\nenv = { V = "2" }\n')
    new = json.loads(cli(tmp_path, "build", "prunable", "--json", "-q", check=True).stdout)["image"]
    # when prune looks (a dry run: a real one would also tidy other projects on this engine)
    result = cli(tmp_path, "prune", "--dry-run", check=True)
    # then the older image is the one to remove; the current one and the base stay
    listed = result.stdout.splitlines()[1:]
    assert f"  {old}" in listed and f"  {new}" not in listed
    assert not [line for line in listed if "base:" in line or "python:" in line]


def test_lock_rewrites_the_lock_from_the_image(project, small_image):
    # given a lock file that lost its entry
    lock = project / "containers.lock"
    lock.unlink()
    # when the environment is locked
    result = cli(project, "lock", "small", check=True)
    # then the entry is back, from the existing image (no rebuild)
    assert result.stdout.startswith("locked small: ")
    assert "six==1.16.0" in lock.read_text()
    assert small_image.image_id in lock.read_text()


@pytest.mark.parametrize("signum", ["SIGTERM", "SIGHUP"])
def test_a_terminated_run_removes_its_container_and_says_so(project, small_image, manager, signum):
    import signal
    import time

    (project / "jupyter_containers_config.py").write_text(
        "c.Builder.image_repository = 'jupyter-containers-test/{env}'\n"
    )
    # given a run of a long command (as a job scheduler would start it)
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyter_containers.cli", "run", "small", "-q", "--", "sleep", "300"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        mine: list = []
        while not mine and time.monotonic() < deadline:
            mine = [
                c
                for c in manager.backend.list_containers()
                if c.label("owner-pid") == str(process.pid) and c.state == "running"
            ]
            time.sleep(0.2)
        assert mine, "the run's container never started"
        # when the scheduler's timeout (SIGTERM) or a closed terminal (SIGHUP) stops it
        process.send_signal(getattr(signal, signum))
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    # then it says so, exits as killed by that signal would, and its container is gone
    assert process.returncode == 128 + getattr(signal, signum)
    assert f"stopped by {signum}" in err
    assert not [c for c in manager.backend.list_containers(all=True) if c.id == mine[0].id]


def test_a_terminated_execute_keeps_its_output_and_removes_its_kernel(project, small_image, manager):
    """A scheduler's timeout (SIGTERM) during `execute`: the run stops as on Ctrl-C, its output notebook keeps
    what the running cell printed and says cancelled, and the kernel's container is gone."""
    import signal
    import time

    import nbformat

    (project / "jupyter_containers_config.py").write_text(
        "c.Builder.image_repository = 'jupyter-containers-test/{env}'\n"
    )
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import time\nprint('partial output', flush=True)\ntime.sleep(300)")]
    nbformat.write(nb, project / "sigterm.ipynb")
    output = project / "sigterm.out.ipynb"
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyter_containers.cli", "execute", "sigterm.ipynb", "--env", "small", "-q"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def printed() -> str:
        try:
            cells = nbformat.read(output, as_version=4).cells
        except (OSError, ValueError):
            return ""
        return "".join(o.get("text", "") for c in cells for o in c.get("outputs", []))

    try:
        deadline = time.monotonic() + 180
        while "partial output" not in printed() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "partial output" in printed(), "the running cell's output never reached the output notebook"
        mine = [c for c in manager.backend.list_containers() if c.label("owner-pid") == str(process.pid)]
        assert mine, "no kernel container of the run"
        # when the scheduler's timeout stops it
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    # then it ended as cancelled, with the output kept, and its container is gone
    assert process.returncode == 130, err
    record = nbformat.read(output, as_version=4).metadata["jupyter_containers"]
    assert record["status"] == "cancelled"
    assert "partial output" in printed()
    assert not [c for c in manager.backend.list_containers(all=True) if c.id == mine[0].id]
