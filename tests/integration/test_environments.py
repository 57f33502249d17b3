"""What a notebook user expects of every environment, on the real engine: pip is there (``pip`` in build steps,
``%pip`` in a container kernel and in ``%%container`` cells), post-build steps run as the user the containers
run as, and a Python the base image lacks is reported before the build, not as a network error inside uv.

One image (module fixture) serves every test but the Python ones, which never get past the check.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from jupyter_containers.kernel.kernelspec import ContainerKernelManager

from ..workspace import make_workspace
from .test_kernel import execute

pytestmark = pytest.mark.engine

SPEC = """
[environments.envs]
description = "pip, post_build as the user, post_build_root"
post_build = [
    "pip --version > $HOME/pip-version && id -u > $HOME/post-build-uid && echo $HOME > $HOME/post-build-home",
]
post_build_root = ["id -u > /etc/jc-root-step"]
"""


def _wheel(folder: Path) -> Path:
    """A tiny pure-Python wheel, so ``%pip install`` needs no index (and no network)."""
    name = "jcdrift-1.0-py3-none-any.whl"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as whl:
        whl.writestr("jcdrift/__init__.py", "VALUE = 42\n")
        whl.writestr("jcdrift-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: jcdrift\nVersion: 1.0\n")
        whl.writestr(
            "jcdrift-1.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        whl.writestr(
            "jcdrift-1.0.dist-info/RECORD",
            "jcdrift/__init__.py,,\njcdrift-1.0.dist-info/METADATA,,\njcdrift-1.0.dist-info/WHEEL,,\n"
            "jcdrift-1.0.dist-info/RECORD,,\n",
        )
    path = folder / name
    path.write_bytes(buf.getvalue())
    path.chmod(0o644)
    return path


@pytest.fixture(scope="module")
def envs(tmp_path_factory: pytest.TempPathFactory, engine_config):
    """The project folder (with a wheel in it), its manager, and the ``envs`` environment built once."""
    from jupyter_containers.manager import ContainersManager

    root = make_workspace(tmp_path_factory.mktemp("environments"), SPEC)
    _wheel(root)
    manager = ContainersManager(spec_path=root / "containers.toml", config=engine_config)
    return root, manager, manager.build("envs")


def _run(manager, command: str) -> str:
    out = bytearray()
    _, _, result = manager.run("envs", ["sh", "-c", command], stdout=out.extend, stderr=out.extend)
    assert result.exit_code == 0, out.decode()
    return out.decode()


def test_pip_is_in_every_environment_and_post_build_can_call_it(envs):
    _, manager, _ = envs
    # when a container of the environment looks for pip (which post_build called during the build)
    out = _run(manager, "pip --version && cat $HOME/pip-version && python -m pip --version")
    # then pip is the virtualenv's, on PATH and as a module
    lines = out.splitlines()
    assert len(lines) == 3 and all("/opt/env/" in line for line in lines), out


def test_post_build_runs_as_the_user_with_its_home_and_post_build_root_as_root(envs):
    _, manager, _ = envs
    # when the files the build steps wrote are read at run time
    out = _run(
        manager, "cat $HOME/post-build-uid $HOME/post-build-home /etc/jc-root-step; stat -c %u $HOME/pip-version"
    )
    # then post_build ran as uid 1000 with HOME=/home/jovyan (its files are the runtime user's), post_build_root as root
    assert out.split() == ["1000", "/home/jovyan", "0", "1000"]


def test_pip_in_a_container_kernel_installs_for_later_cells_and_notes_the_drift(envs):
    root, manager, build = envs
    km = ContainerKernelManager(
        environment="envs", spec_file=str(root / "containers.toml"), resources={"memory": "256m"}, config=manager.config
    )
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        # when a cell installs a package with %pip (a local wheel: no index needed)
        status, out, _ = execute(kc, "%pip install --no-index /workspace/jcdrift-1.0-py3-none-any.whl", timeout=120)
        # then it succeeds and says that the session drifted from the spec, and how to add it
        assert status == "ok", out
        assert "Successfully installed jcdrift-1.0" in out
        assert "drifted from environment 'envs'" in out
        assert 'pip = ["/workspace/jcdrift-1.0-py3-none-any.whl"] in [environments.envs]' in out
        # and a later cell imports it
        status, out, _ = execute(kc, "import jcdrift; print(jcdrift.VALUE)")
        assert (status, out.strip()) == ("ok", "42")
        # when %pip fails
        status, out, errors = execute(kc, "%pip install --no-index no-such-package-jc", timeout=120)
        # then the cell fails, with one line naming the command (not a success after pip's error)
        assert status == "error", out
        assert "%pip install --no-index no-such-package-jc failed (pip exit code 1)" in errors[0]["traceback"][0]
        # and %uv, in an image that does not keep uv, says how to get it and what to use instead
        status, _, errors = execute(kc, "%uv pip install requests")
        assert status == "error"
        assert "c.Builder.keep_uv = True" in errors[0]["traceback"][0]
        assert "use %pip install requests" in errors[0]["traceback"][0]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    # and what was installed by hand is not in the lock
    assert not any(p.startswith("jcdrift") for p in build.lock.packages)
    assert any(p.startswith("pip==") for p in build.lock.packages)


def test_uv_in_a_kernel_when_the_image_keeps_it(envs):
    """c.Builder.keep_uv copies uv into the image as its last layer (every other layer is reused)."""
    import copy

    from jupyter_containers.manager import ContainersManager

    root, manager, build = envs
    config = copy.deepcopy(manager.config)
    config.Builder.keep_uv = True
    keeping = ContainersManager(spec_path=root / "containers.toml", config=config)
    kept = keeping.build("envs")
    assert kept.image != build.image  # another Dockerfile, another tag
    km = ContainerKernelManager(environment="envs", spec_file=str(root / "containers.toml"), config=config)
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        # when a cell installs with %uv
        status, out, _ = execute(kc, "%uv pip install --no-index /workspace/jcdrift-1.0-py3-none-any.whl", timeout=120)
        # then uv installed it into the kernel's environment, and the drift note says so
        assert status == "ok", out
        assert "drifted from environment 'envs'" in out
        status, out, _ = execute(kc, "import jcdrift; print(jcdrift.VALUE)")
        assert (status, out.strip()) == ("ok", "42")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        keeping.backend.remove_image(kept.image)


def test_a_failed_pip_fails_a_container_cell(envs):
    from jupyter_containers.kernel.pool import get_pool
    from jupyter_containers.kernel.remote import RemoteError

    _, manager, _ = envs
    session = manager.session("envs")
    try:
        # when a %%container cell's %pip fails, then the cell raises (the notebook shows an error)
        with pytest.raises(RemoteError) as info:
            session.execute(
                "%pip install --no-index no-such-package-jc", stdout=lambda _t: None, stderr=lambda _t: None
            )
        assert "failed (pip exit code 1)" in str(info.value)
    finally:
        get_pool().stop_all()


def test_a_python_the_base_lacks_is_reported_before_the_build(envs, tmp_path, engine_config):
    import copy

    from jupyter_containers.errors import BuildError
    from jupyter_containers.manager import ContainersManager

    # given an environment asking for a Python the (offline, Debian) base does not have, downloads off
    _, _, build = envs
    (tmp_path / "py").mkdir()
    root = make_workspace(tmp_path / "py", '[environments.envs]\npython = "3.12"\n')
    config = copy.deepcopy(engine_config)  # the session's config stays as it is
    config.Builder.python_downloads = False
    manager = ContainersManager(spec_path=root / "containers.toml", config=config)
    events = []

    # when it is built
    with pytest.raises(BuildError) as info:
        manager.build("envs", on_event=events.append)

    # then it fails before any build step, naming the spec, the base's Pythons and the offline way
    message = str(info.value)
    assert "environments.envs.python" in message and "asks for Python 3.12" in message
    assert f"has Python {build.lock.python}" in message
    assert 'base = "python:3.12-slim"' in message and "docs/air-gapped.md" in message
    assert not [e for e in events if e.kind == "step"]


def test_a_python_download_is_announced_and_its_failure_explained(envs, tmp_path, engine_config):
    from jupyter_containers.errors import BuildError
    from jupyter_containers.manager import ContainersManager

    # given the same request with downloads allowed (the default), on this machine that cannot reach GitHub
    (tmp_path / "py").mkdir()
    root = make_workspace(tmp_path / "py", '[environments.envs]\npython = "3.12"\n')
    manager = ContainersManager(spec_path=root / "containers.toml", config=engine_config)
    events = []

    # when it is built
    try:
        manager.build("envs", on_event=events.append)
    except BuildError as exc:
        # then, when the download fails, the error says why and what works offline
        assert "docs/air-gapped.md" in str(exc) and "asks for Python 3.12" in str(exc)
    # and before any step, a warning said where the interpreter would come from
    first_step = next((i for i, e in enumerate(events) if e.kind == "step"), len(events))
    warnings = [e.text for e in events[:first_step] if "uv will download Python 3.12" in e.text]
    assert warnings and "github.com" in warnings[0]
