"""The faster paths give the same results as before, on the real engine and real kernels.

- A session kernel now starts without ipykernel's per-reply sleep and with flushes that return at once when
  nothing is pending, and the session decodes messages without parsing their dates: the same cells give the
  same outputs, in the same order, as a session with the previous kernel arguments and jupyter_client's own
  decoding.
- Spare kernels (``c.ContainerSessions.pool``): the first cell takes one, the pool refills up to its size and
  never beyond, the containers are labelled as the pool's, and the notebook kernel's shutdown removes them all.
- An image inspection without docker-py (an unchanged ``jupyter-containers build``) answers what the SDK answers,
  and that command imports neither http.client nor importlib.metadata nor what only a real build needs.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from ..conftest import PROJECT_SPEC, TEST_REPOSITORY
from ..kernels import stream_text
from ..workspace import make_workspace

pytestmark = pytest.mark.engine

ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: Cells that print, return, display, fail, flush explicitly, write from a subprocess and interleave kinds.
CELLS = [
    "print('hello')",
    "41 + 1",
    "import sys\nprint('to stderr', file=sys.stderr)",
    "print('a', end='')\nsys.stdout.flush()\nprint('b')",
    "from IPython.display import HTML, display\ndisplay(HTML('<b>x</b>'))\nprint('after display')",
    "print('before'); display(HTML('<i>y</i>')); print('between'); 'last'",
    # (the pause: ipykernel forwards a subprocess's output from a thread of its own, racing the next print)
    "import subprocess, time\n_ = subprocess.run(['echo', 'from a subprocess'])\ntime.sleep(0.5)\nprint('done')",
    "def divide(a, b):\n    return a / b\n\ndivide(1, 0)",
    "pass",
    "x = 5\nx * 2",
]


def _outputs(session, cells: list[str]) -> list[list[tuple]]:
    from jupyter_containers.kernel.remote import RemoteError

    runs = []
    for number, code in enumerate(cells, start=1):
        seen: list[tuple] = []
        try:
            result = session.execute(
                code,
                stdout=lambda text, seen=seen: seen.append(("stdout", text)),
                stderr=lambda text, seen=seen: seen.append(("stderr", text)),
                display=lambda kind, content, seen=seen: seen.append((kind, content.get("data"))),
                execution_count=number,
            )
            if result is not None:
                seen.append(("result", result.data))
        except RemoteError as exc:
            seen.append(("error", exc.ename, exc.evalue, ANSI.sub("", "\n".join(exc.traceback))))
        runs.append(_merged(seen))
    return runs


def _merged(seen: list[tuple]) -> list[tuple]:
    # Stream text may arrive in one message or several: compare the text between other outputs.
    out: list[tuple] = []
    for item in seen:
        if out and item[0] in ("stdout", "stderr") and out[-1][0] == item[0]:
            out[-1] = (item[0], out[-1][1] + item[1])
        else:
            out.append(item)
    return out


def test_the_faster_session_kernel_gives_the_same_outputs(manager, small_image, monkeypatch):
    from jupyter_containers.kernel import session as session_module
    from jupyter_containers.kernel.session import ContainerSession

    # given a session as before (only the history off, jupyter_client's decoding) and one as now
    def previous_decode(session, frames):
        return session.deserialize(session.feed_identities(frames)[1], content=True)

    sessions = {}
    with monkeypatch.context() as before:
        before.setattr(session_module, "KERNEL_ARGUMENTS", ["--HistoryManager.enabled=False"])
        before.setattr(session_module, "decode", previous_decode)
        sessions["before"] = ContainerSession(manager, "small", manager.resources("small"))
        sessions["before"].start()
        try:
            outputs_before = _outputs(sessions["before"], CELLS)
        finally:
            sessions["before"].stop()
    sessions["now"] = ContainerSession(manager, "small", manager.resources("small"))
    sessions["now"].start()
    try:
        # when both run the same cells
        outputs_now = _outputs(sessions["now"], CELLS)
        sleep = sessions["now"].evaluate("get_ipython().kernel._execute_sleep")
        flush = sessions["now"].evaluate("type(__import__('sys').stdout.flush).__name__")
    finally:
        sessions["now"].stop()

    # then every cell gives the same outputs in the same order (the traceback included)
    assert outputs_now == outputs_before
    assert outputs_now[0] == [("stdout", "hello\n")]
    assert outputs_now[5] == [
        ("stdout", "before\n"),
        ("display_data", {"text/html": "<i>y</i>", "text/plain": "<IPython.core.display.HTML object>"}),
        ("stdout", "between\n"),
        ("result", {"text/plain": "'last'"}),
    ]
    assert outputs_now[6] == [("stdout", "from a subprocess\ndone\n")]
    assert outputs_now[7][0][:3] == ("error", "ZeroDivisionError", "division by zero")
    # and the faster kernel is the one that ran them
    assert sleep["data"]["text/plain"] == "0.0"
    assert flush["data"]["text/plain"] == "'function'"


# ---------------------------------------------------------------------- spares
POOL_CONFIG = (
    f"c.Builder.image_repository = {TEST_REPOSITORY!r}\n"
    "c.ContainerSessions.pool = {'small': {'size': 1, 'memory': '200m'}}\n"
)


def _pool_containers(manager, pid: int) -> list:
    return [
        c
        for c in manager.backend.list_containers(all=True)
        if c.label("role") == "session" and c.label("owner-pid") == str(pid)
    ]


def test_the_first_cell_takes_a_spare_and_the_kernels_shutdown_removes_the_pool(manager, small_image, tmp_path: Path):
    from jupyter_client.manager import start_new_kernel

    from jupyter_containers.manager import ContainersManager

    root = make_workspace(tmp_path, PROJECT_SPEC, config=POOL_CONFIG)
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(root))
    pid = None
    try:

        def text(code: str) -> str:
            return stream_text(kc, code)

        def spares() -> list[str]:
            return text(
                "from jupyter_containers.kernel.pool import get_pool\n"
                "print(' '.join(s.container_id for s in get_pool().spares()))"
            ).split()

        pid = int(text("%load_ext jupyter_containers\nimport os\nprint(os.getpid())"))
        # given the pool's spare, started in the background once the extension is loaded
        deadline = time.monotonic() + 120
        while not spares() and time.monotonic() < deadline:
            time.sleep(0.5)
        (spare,) = spares()
        listed = {c["id"]: c for c in ContainersManager.discover(root / "containers.toml").containers(usage=False)}
        assert listed[spare]["pool"] is True and listed[spare]["role"] == "session"

        # when the first cell asks for that environment with those limits
        out = text("%%container small --memory 200m\nimport socket\nprint('in', socket.gethostname())")

        # then it ran in the spare, which is now its session, and the pool started one more spare, no more
        session = text("print(get_pool().list()[0].container_id)").strip()
        assert session == spare
        assert out.strip() == f"in {spare[:12]}"
        deadline = time.monotonic() + 120
        while not spares() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert len(spares()) == 1 and spares() != [spare]
        assert len(_pool_containers(manager, pid)) == 2
        # and a cell with other limits does not take it
        text("%%container small --memory 180m\npass")
        assert len(spares()) == 1
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
    # then the notebook kernel's shutdown removed the sessions and the spare
    deadline = time.monotonic() + 20
    while _pool_containers(manager, pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _pool_containers(manager, pid) == []


def test_a_kernel_that_exits_while_a_spare_is_starting_removes_its_session(manager, small_image, tmp_path: Path):
    from jupyter_client.manager import start_new_kernel

    from jupyter_containers.manager import owner_process_gone

    root = make_workspace(tmp_path, PROJECT_SPEC, config=POOL_CONFIG)
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(root))
    try:

        def text(code: str) -> str:
            return stream_text(kc, code, check=False)

        pid = int(text("%load_ext jupyter_containers\nimport os\nprint(os.getpid())"))
        deadline = time.monotonic() + 120
        while "1" not in text("from jupyter_containers.kernel.pool import get_pool\nprint(len(get_pool().spares()))"):
            assert time.monotonic() < deadline, "no spare started"
            time.sleep(0.5)
        # given a first cell that took the spare, so that its replacement is starting
        text("%%container small --memory 200m\npass")
        session = text("print(get_pool().list()[0].container_id)").strip()
    finally:
        # when the notebook's kernel shuts down at once
        kc.stop_channels()
        km.shutdown_kernel(now=False)
    # then the session is removed; a spare still starting when the kernel ended is its owner's no more, which
    # is what `jupyter-containers prune` removes (removed here by id)
    deadline = time.monotonic() + 20
    while session in {c.id for c in _pool_containers(manager, pid)} and time.monotonic() < deadline:
        time.sleep(0.2)
    left = _pool_containers(manager, pid)
    for container in left:
        manager.backend.remove_container(container.id)
    assert session not in {c.id for c in left}
    assert all(c.label("pool") == "1" and owner_process_gone(c.labels) for c in left)
    assert len(left) <= 1


def test_a_bad_pool_setting_is_named():
    from traitlets.config import Config

    from jupyter_containers.errors import SpecError
    from jupyter_containers.kernel.pool import ContainerSessions

    for pool, named in (
        ({"small": -1}, "size -1"),
        ({"small": {"size": 1, "colour": "red"}}, "'colour' is not a limit"),
        ({"small": {"memory": "lots"}}, "c.ContainerSessions.pool['small']"),
    ):
        config = Config()
        config.ContainerSessions.pool = pool
        with pytest.raises(SpecError, match=re.escape(named)):
            ContainerSessions(config=config).entries()


# ---------------------------------------------------------------------- an unchanged build without docker-py
def test_image_inspection_without_the_sdk_gives_what_the_sdk_gives(manager, small_image):
    from jupyter_containers.backends.docker import _UNANSWERED, DockerBackend

    # given a backend that has not made its SDK client yet, and one that has
    fresh = DockerBackend(config=manager.config)
    # when both inspect the same images
    direct = fresh._inspect_image_directly(small_image.image)
    missing = fresh._inspect_image_directly("jupyter-containers-test/no-such-image:0")
    # then the answers are the SDK's, and no SDK client was made for them
    assert direct == manager.backend.api.inspect_image(small_image.image)
    assert missing is None
    assert fresh._api is None
    assert fresh.image_id(small_image.image) == small_image.image_id
    # and an engine that is not a local socket is left to the SDK
    assert DockerBackend(base_url="tcp://127.0.0.1:9")._inspect_image_directly(small_image.image) is _UNANSWERED


def _unchanged_build_twice(tmp_path: Path, probe: str) -> tuple[dict, str]:
    """``jupyter-containers build small --json -q`` in a new interpreter, twice (a first build writes the lock):
    the second run's JSON answer, and what it printed of ``probe`` (an expression over ``sys.modules`` and the
    command's ``status``) after the command returned."""
    import json
    import subprocess
    import sys

    root = make_workspace(tmp_path, PROJECT_SPEC, config=f"c.Builder.image_repository = {TEST_REPOSITORY!r}\n")
    code = (
        "import sys\nfrom jupyter_containers.cli import main\n"
        "status = main(['build', 'small', '--json', '-q'])\n"
        f"print({probe})"
    )
    first = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0 and (root / "containers.lock").is_file(), first.stderr
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    answer, printed = result.stdout.strip().splitlines()
    return json.loads(answer), printed


def test_an_unchanged_build_through_the_command_does_not_import_docker_py(manager, small_image, tmp_path: Path):
    # given an environment whose image is up to date, and its lock written; when the command builds it again
    answer, flags = _unchanged_build_twice(tmp_path, "'docker' in sys.modules, 'requests' in sys.modules, status")
    # then it said so, the same as before, without importing the docker SDK (most of its start-up time)
    assert answer["image"] == small_image.image and answer["built"] is False
    assert flags == "False False 0"


#: What an unchanged build no longer imports (docs/performance.md): http.client with ssl and email (the image
#: inspections speak HTTP on the socket themselves), importlib.metadata (the uv version is read from its
#: dist-info), and modules only building, running, reading requirement files or a registry need.
NOT_IMPORTED_BY_AN_UNCHANGED_BUILD = (
    "http.client",
    "ssl",
    "email.parser",
    "importlib.metadata",
    "tarfile",
    "difflib",
    "jupyter_containers.usage",
    "jupyter_containers.backends.buildkit",
    "jupyter_containers.spec.requirements",
    "jupyter_containers.share.registry",
)


def test_an_unchanged_build_through_the_command_imports_only_what_it_needs(manager, small_image, tmp_path: Path):
    # given an environment whose image is up to date, and its lock written; when the command builds it again
    answer, imported = _unchanged_build_twice(
        tmp_path, f"status, [name for name in {NOT_IMPORTED_BY_AN_UNCHANGED_BUILD!r} if name in sys.modules]"
    )
    # then it answered the same, and none of those modules was imported on the way
    assert answer["image"] == small_image.image and answer["built"] is False
    assert imported == "0 []"
