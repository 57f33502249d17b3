"""Golden Dockerfiles: the same spec renders byte-identical files, layered least to most volatile.

Regenerate after an intended change with ``UPDATE_GOLDEN=1 pytest tests/unit/test_dockerfile.py``.
"""

import os
from pathlib import Path

import pytest

from jupyter_containers.images.dockerfile import KERNEL_STARTUP, BuildInputs, render
from jupyter_containers.spec.model import Environment

GOLDEN = Path(__file__).parent / "golden"

CASES = {
    "minimal": (Environment(name="minimal"), BuildInputs(base="python:3.11-slim")),
    "full": (
        Environment(
            name="vision",
            python="3.11",
            pip=("numpy>=1.26", "pandas"),
            apt=("libgl1", "curl"),
            post_build=("python -c 'import numpy'", "#!/bin/bash\necho multi\necho line\n"),
            post_build_root=("ln -s /opt/env/bin/python /usr/local/bin/envpython",),
            env={"PYTHONHASHSEED": "0", "A": 'quote"d'},
        ),
        BuildInputs(
            base="python:3.11-slim",
            requirements=["--index-url https://mirror.example/simple", "scipy==1.13.0"],
            constraints=["numpy<3"],
            pip=["numpy>=1.26", "pandas"],
            apt=["libgl1", "curl"],
            has_ca=True,
            has_index_config=True,
        ),
    ),
    # env values a Dockerfile ENV holds exactly, and ones it cannot (a newline, a tab): see env_lines.
    "env": (
        Environment(
            name="env",
            post_build=('echo "$B"',),
            env={"A": "café", "B": "line1\nline2", "C": "$HOME-x", "D": 'quote" and \\ backslash', "E": "it's\ttab"},
        ),
        BuildInputs(base="python:3.11-slim"),
    ),
    "locked": (
        Environment(name="vision", pip=("numpy",), apt=("libgl1",)),
        BuildInputs(
            base="python:3.11-slim", locked=["numpy==2.0.0"], pip=["numpy"], apt=["libgl1=1.6.0-1"], has_ca=True
        ),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case):
    env, inputs = CASES[case]
    dockerfile, files = render(env, inputs)
    rendered = dockerfile + "".join(f"\n### {name}\n{files[name].decode()}" for name in sorted(files))
    golden = GOLDEN / f"{case}.Dockerfile"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(rendered)
    assert rendered == golden.read_text()


def test_rendering_is_deterministic():
    env, inputs = CASES["full"]
    assert render(env, inputs) == render(env, inputs)


def test_layers_go_from_least_to_most_volatile():
    dockerfile, _ = render(*CASES["full"])
    markers = ("FROM ", "apt-get install", " venv ", "requirements.txt", "pip.txt", "ENV A=", "post_build_0")
    order = [dockerfile.index(marker) for marker in markers]
    assert order == sorted(order)


def test_build_only_inputs_never_enter_a_layer():
    # The uv binary, the CA bundle and index settings come in through bind mounts, never COPY/ADD.
    dockerfile, _ = render(*CASES["full"])
    copies = [line for line in dockerfile.splitlines() if line.startswith(("COPY", "ADD"))]
    assert copies == [f"COPY .jc/kernel_startup.py {KERNEL_STARTUP}"]  # the only file that stays, on purpose
    assert "source=.jc/ca-certificates.crt" in dockerfile
    assert "source=.jc/uv.toml" in dockerfile


def test_runs_as_non_root_in_the_workspace():
    dockerfile, _ = render(*CASES["minimal"])
    assert dockerfile.rstrip().splitlines()[-2:] == ["USER 1000", "WORKDIR /workspace"]


def _users(dockerfile: str) -> list[tuple[str, str]]:
    """(user, line) for every RUN line: who each build step runs as."""
    user, out = "root", []
    for line in dockerfile.splitlines():
        if line.startswith("USER "):
            user = line.split()[1]
        elif line.startswith("RUN"):
            out.append((user, line))
    return out


def test_every_environment_gets_pip_with_its_virtualenv():
    # given any environment, with or without a kernel of its own
    for kernel in (True, False):
        dockerfile, files = render(Environment(name="e"), BuildInputs(base="b", kernel=kernel))
        # then the virtualenv step installs pip (uv still does the installing) and later layers keep it
        assert files[".jc/seed.txt"].decode().splitlines()[0] == "pip"
        venv = next(line for line in dockerfile.splitlines() if " venv " in line)
        assert venv.endswith("-r /tmp/jupyter-containers/seed.txt")


def test_post_build_runs_as_the_user_with_its_home_and_post_build_root_as_root():
    # given an environment with user and root post-build steps
    env = Environment(name="e", apt=("curl",), post_build=("echo user",), post_build_root=("echo root",))
    dockerfile, _ = render(env, BuildInputs(base="b", apt=["curl"]))
    users = _users(dockerfile)
    # then apt runs as root, uv and post_build as uid 1000 with HOME=/home/jovyan, post_build_root as root
    by_step = {
        next(k for k in ("apt-get", "post_build_root_0", "post_build_0", " venv ") if k in line): (user, line)
        for user, line in users
        if any(k in line for k in ("apt-get", "post_build_root_0", "post_build_0", " venv "))
    }
    assert by_step["apt-get"][0] == "root"
    assert by_step[" venv "][0] == "1000:1000" and "HOME=/home/jovyan" in by_step[" venv "][1]
    assert by_step["post_build_0"][0] == "1000:1000" and "HOME=/home/jovyan" in by_step["post_build_0"][1]
    assert by_step["post_build_root_0"][0] == "root" and "HOME=/root" in by_step["post_build_root_0"][1]
    # and the root steps come first, and the user owns the virtualenv it builds
    assert dockerfile.index("post_build_root_0") < dockerfile.index("post_build_0 ")
    assert "chown 1000:1000 /workspace /home/jovyan /opt/env" in dockerfile


def test_kernels_get_the_pip_magic_and_the_environment_name():
    dockerfile, files = render(Environment(name="vision"), BuildInputs(base="b"))
    assert "JUPYTER_CONTAINERS_ENV=vision" in dockerfile
    startup = files[".jc/kernel_startup.py"].decode()
    assert 'register_magic_function(pip, "line", "pip")' in startup
    assert 'register_magic_function(uv, "line", "uv")' in startup
    assert 'register_magic_function(container_cell, "cell", "container")' in startup
    assert "/opt/env/bin/uv" not in dockerfile  # uv stays out of the image unless kept
    kept, _ = render(Environment(name="vision"), BuildInputs(base="b", keep_uv=True))
    assert "COPY --from=jupyter-containers/uv --chown=1000:1000 /uv /opt/env/bin/uv" in kept


def test_a_post_build_step_denied_root_access_points_at_post_build_root():
    from types import SimpleNamespace

    from jupyter_containers.errors import BuildError
    from jupyter_containers.images.builder import Builder

    # given a failed user step whose log says it needed root
    failed = BuildError(
        "build failed", step="RUN post_build_0", log_tail=["E: Could not open lock file - open (13: Permission denied)"]
    )
    plan = SimpleNamespace(environment=Environment(name="vision"), base="b", base_image_id="x")
    # when the builder explains it, then it names the user the step ran as and the field for root steps
    message = str(Builder()._explained(failed, plan))
    assert "post_build steps run as the environment's user (uid 1000, HOME=/home/jovyan)" in message
    assert "post_build_root in [environments.vision]" in message


def test_an_incremental_build_runs_the_last_install_layer_of_a_cold_build_on_the_previous_image():
    """Why an incremental image holds what a cold one holds: its one layer is the cold build's last install
    step (the resolution of every source, synced exactly), on the previous image of the same frame."""
    from jupyter_containers.images.dockerfile import render_delta

    # given an environment with requirement files, constraints, a pip list and env values
    env = Environment(name="e", pip=("pandas",), env={"PYTHONHASHSEED": "0", "PIP_INDEX_URL": "x"})
    inputs = BuildInputs(base="b", requirements=["numpy==2.0.0"], constraints=["numpy<3"], pip=["pandas"], has_ca=True)
    cold, cold_files = render(env, inputs)
    # when the incremental Dockerfile is rendered on the previous image
    delta, delta_files = render_delta(env, inputs, "jupyter-containers/e:0123456789abcdef")
    lines = delta.splitlines()
    # then it starts from that image and runs one step, as the user of the install layers
    assert lines[2] == "FROM jupyter-containers/e:0123456789abcdef"
    runs = [line for line in lines if line.startswith("RUN")]
    assert len(runs) == 1 and lines[lines.index(runs[0]) - 1] == "USER 1000:1000"
    assert lines[-1] == "USER 1000"
    # and that step is the cold build's last install step, with the spec's env unset as in a cold build
    last_install = [line for line in cold.splitlines() if "--exact --upgrade" in line][-1]
    assert runs[0] == last_install.replace(" env HOME=", " env -u PIP_INDEX_URL -u PYTHONHASHSEED HOME=")
    assert (
        "--exact --upgrade -c /tmp/jupyter-containers/constraints.txt -r /tmp/jupyter-containers/requirements.txt"
        in runs[0]
    )
    # and it installs from the same files
    assert {name: delta_files[name] for name in delta_files} == {name: cold_files[name] for name in delta_files}


def test_the_frame_leaves_out_only_the_requirement_files_and_the_pip_list():
    from jupyter_containers.images.dockerfile import frame_inputs

    env, inputs = CASES["full"]
    frame, files = render(env, frame_inputs(inputs))
    # then the frame has no install layers and no requirement files, and the rest of the Dockerfile
    assert "requirements.txt" not in frame and "pip.txt" not in frame and "--exact" not in frame
    assert not {".jc/requirements.txt", ".jc/pip.txt", ".jc/constraints.txt"} & set(files)
    full, _ = render(env, inputs)
    assert [line for line in full.splitlines() if "--exact --upgrade" not in line] == frame.splitlines()


def test_the_compile_script_compiles_only_stale_modules_outside_tests(tmp_path):
    """The build's bytecode step (COMPILE_SCRIPT), run here on a small tree: what it compiles, what it leaves."""
    import importlib.util
    import subprocess
    import sys

    from jupyter_containers.images.dockerfile import COMPILE_EXCLUDE, COMPILE_SCRIPT

    site = tmp_path / "lib" / "python3" / "site-packages"
    for name in ("pkg/__init__.py", "pkg/core.py", "pkg/tests/test_core.py", "pip/__init__.py", "other.py"):
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text("X = 1\n")
    (site / "broken.py").write_text("print 'python 2'\n")  # fails no build
    script = tmp_path / "compile.py"
    script.write_text(COMPILE_SCRIPT)

    def run() -> str:
        done = subprocess.run(
            [sys.executable, str(script), str(tmp_path / "lib"), COMPILE_EXCLUDE], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert run().startswith("Bytecode compiled 4 files in ")  # three modules and the broken one (tried)
    pyc = {p: Path(importlib.util.cache_from_source(str(site / p))).is_file() for p in ("pkg/core.py", "other.py")}
    assert pyc == {"pkg/core.py": True, "other.py": True}
    assert not Path(importlib.util.cache_from_source(str(site / "pkg/tests/test_core.py"))).exists()
    assert not Path(importlib.util.cache_from_source(str(site / "pip/__init__.py"))).exists()
    # unchanged files are only checked; a changed one (another size) is compiled again
    assert run().startswith("Bytecode compiled 1 files in ")  # the broken module, which has no bytecode
    (site / "other.py").write_text("X = 22\n")
    assert run().startswith("Bytecode compiled 2 files in ")
