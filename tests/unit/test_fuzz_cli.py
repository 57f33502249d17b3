"""Property-based test of the command line, in-process: for any argv of ``import``, ``capture``, ``spec``,
``build``, ``run`` and ``execute`` (paths, names, resource flags, volumes, env pairs, odd unicode, NULs,
huge numbers), ``main`` returns an exit status and never raises; argparse's usage error (SystemExit 2) is
the only exit allowed. Nothing reaches an engine: the manager's engine calls are replaced by a stub that
fails like a missing engine does, after every argument has been parsed and validated.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jupyter_containers.errors import ContainersError
from jupyter_containers.spec.importers import ImportResult, _explicit_name
from jupyter_containers.spec.model import Environment

from .fuzzing import fuzz_settings, scratch, time_limit

SPEC = """
[environments.x]
pip = ["six"]
requirements = ["requirements.txt"]
env = { A = "café", B = "line1\\nline2" }

[environments."a.b"]
[environments."a.b".resources]
cpus = 1
memory = "256m"
"""


class EngineStub(ContainersError):
    """Raised where a real run would talk to the engine."""


@pytest.fixture
def no_engine(monkeypatch):
    """Builds "succeed" without an engine and every engine call fails like a missing engine, so a run is
    parsed, validated and turned into a request (resources, mounts, environment) before it stops."""
    from jupyter_containers.backends.docker import DockerBackend
    from jupyter_containers.images.builder import Builder, BuildResult
    from jupyter_containers.manager import ContainersManager

    def stub(*args, **kwargs):
        raise EngineStub("stub: the fuzzer has no engine")

    def build(self, name, **kwargs):
        self.environment(name)
        return BuildResult(name, "jupyter-containers-test/fuzz:0", "sha256:0", False, 0.0)

    monkeypatch.setattr(ContainersManager, "build", build)
    for name in ("execute", "lock", "images", "prune", "engine"):
        monkeypatch.setattr(ContainersManager, name, stub)
    for name in ("run", "pull", "image_id", "build", "list_images", "list_containers"):
        monkeypatch.setattr(DockerBackend, name, stub)
    monkeypatch.setattr(Builder, "resolve_base", lambda self, env, **kwargs: ("python:3.11-slim", "sha256:0"))

    def capture(name="captured", *, imported=False, modules=None):  # the interpreter's packages are no input
        return ImportResult(Environment(name=_explicit_name(name), python="3.11", pip=("six==1.16.0",)))

    monkeypatch.setattr("jupyter_containers.spec.capture.capture_environment", capture)


def make_workspace(folder: Path) -> None:
    (folder / "containers.toml").write_text(SPEC)
    (folder / "requirements.txt").write_text("numpy\n-r more.txt\n")
    (folder / "more.txt").write_text("pandas\n")
    (folder / "environment.yml").write_text("name: demo\ndependencies:\n  - python=3.11\n  - pip:\n    - rich\n")
    (folder / "pyproject.toml").write_text('[project]\nname = "demo"\ndependencies = ["six"]\n')
    (folder / "binder").mkdir()
    (folder / "binder" / "requirements.txt").write_text("six\n")
    (folder / "script.py").write_text("import os\nimport numpy\n")
    (folder / "sub").mkdir()


ODD = st.text(st.characters(blacklist_categories=("Cs",)), max_size=10)
NULS = st.sampled_from(["a\0b", "\0", "x\0.toml", "data\0:/data"])
PATHS = (
    NULS
    | st.sampled_from(
        [
            "containers.toml",
            "requirements.txt",
            "environment.yml",
            "pyproject.toml",
            "binder",
            ".",
            "sub",
            "missing.txt",
            "missing-dir/containers.toml",
            "sub/new.toml",
            "/",
            "/dev/null",
            "/proc/self/status",
            "a\0b",
            "",
            "script.py",
            "Pipfile",
            "../../../../etc/passwd",
        ]
    )
    | ODD.map(lambda t: t.replace("/", "_") or "x")
)
NUMBERS = st.sampled_from(
    ["1", "0", "-1", "1e300", "9223372036854775807", "nan", "inf", "0.001", "4097", "1.5", "2g", "1p", "2p", "90s"]
) | st.from_regex(r"-?\d{1,30}(\.\d{1,3})?(s|m|h|d|k|g|p|ms)?", fullmatch=True)
VALUES = (
    NULS | PATHS | NUMBERS | ODD | st.sampled_from(["x", "a.b", "default", "all", "none", "bridge", "0,2", "device=1"])
)
RESOURCE_FLAGS = ["--cpus", "-m", "--memory", "--memory-swap", "--gpus", "--shm-size", "--pids-limit", "--timeout"]


@st.composite
def argvs(draw: st.DrawFn) -> list[str]:
    command = draw(st.sampled_from(["import", "capture", "spec show", "spec list", "build", "run", "execute"]))
    argv = command.split()
    if command == "import":
        argv.append(draw(PATHS))
        argv += draw(st.sampled_from([[], ["-o", draw(PATHS)], ["--output", "out.toml"]]))
    elif command == "capture":
        argv += ["-o", draw(PATHS)]
        if draw(st.booleans()):
            argv += ["--imported", *draw(st.lists(PATHS, max_size=2))]
    elif command == "execute":
        argv += [draw(PATHS), "--env", draw(VALUES)]
        for _ in range(draw(st.integers(0, 2))):
            argv += [draw(st.sampled_from(["-p", "-r"])), draw(ODD), draw(VALUES)]
    elif command != "spec list":
        argv.append(draw(st.sampled_from(["x", "a.b", "missing", ""]) | ODD))
    options: list[list[str]] = {
        "import": [["--name", "NAME"], ["--force"]],
        "capture": [["--name", "NAME"], ["--force"]],
        "spec show": [["--json"], ["--dockerfile"]],
        "spec list": [["--json"]],
        "build": [["--locked"], ["--json"], ["-q"]],
        "run": [[flag, "VALUE"] for flag in RESOURCE_FLAGS]
        + [["--network", "VALUE"], ["-v", "VALUE"], ["-v", "VALUE"], ["-e", "VALUE"], ["-e", "VALUE"], ["-q"]],
        "execute": [[flag, "VALUE"] for flag in RESOURCE_FLAGS]
        + [["-o", "VALUE"], ["-q"], ["-y", "VALUE"], ["-b", "VALUE"], ["--parameters-file", "PATH"]]
        + [["--cwd", "PATH"], ["--report-mode"]],
    }[command] + [["-f", "PATH"], ["--backend", "VALUE"]]
    for option in draw(st.lists(st.sampled_from(options), max_size=4)):
        for word in option:
            argv.append(
                draw(st.sampled_from(["x", "a.b", "captured", "Bad Name"]) | ODD)
                if word == "NAME"
                else draw(VALUES)
                if word == "VALUE"
                else draw(PATHS)
                if word == "PATH"
                else word
            )
    if command == "run" and draw(st.booleans()):
        argv += ["--", *draw(st.lists(VALUES, min_size=0, max_size=2))]
    if draw(st.integers(0, 9)) == 0:  # a stray word or flag anywhere
        argv.insert(draw(st.integers(0, len(argv))), draw(VALUES | st.sampled_from(["--", "-", "--nope", "-h"])))
    return argv


def run_cli(argv: list[str]) -> tuple[int, str]:
    from jupyter_containers.cli import main

    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace")
    err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace")
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as exc:  # argparse: usage errors (2), --help (0)
            assert exc.code in (0, 2), f"SystemExit({exc.code!r})"
            status = exc.code
    err.flush()
    return status, err.buffer.getvalue().decode("utf-8", "replace")


@fuzz_settings(400)
@given(argv=argvs())
def test_the_cli_returns_a_status_for_any_arguments(no_engine, argv):
    with scratch() as folder:
        make_workspace(folder)
        old = os.getcwd()
        os.chdir(folder)
        try:
            with time_limit():
                status, stderr = run_cli(argv)
        finally:
            os.chdir(old)
        assert isinstance(status, int) and not isinstance(status, bool)
        if status == 1:
            # an error is one line on stderr, never a traceback
            assert "jupyter-containers: error: " in stderr and "Traceback" not in stderr, stderr
        # nothing was written outside the scratch folder: every relative path stayed relative to it
        assert not (Path(old) / "out.toml").exists()


def test_the_fuzzer_reaches_the_stubbed_engine(no_engine, tmp_path, monkeypatch):
    # given the fuzzer's workspace, when a valid run is asked for, then it gets as far as the engine stub
    make_workspace(tmp_path)
    monkeypatch.chdir(tmp_path)
    status, stderr = run_cli(["run", "x", "--cpus", "1.5", "--", "true"])
    assert status == 1 and "stub: the fuzzer has no engine" in stderr
