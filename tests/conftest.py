"""Shared fixtures: one test project on disk, one manager on the real engine, cleanup of what tests create.

Test images go to their own repository (``jupyter-containers-test/...``) and carry our labels, so the
session removes exactly them at the end and a crashed run is pruned by ``jupyter-containers prune``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .workspace import make_workspace

TEST_REPOSITORY = "jupyter-containers-test/{env}"

PROJECT_SPEC = """
[environments.small]
description = "the shared test environment"
pip = ["six==1.16.0"]
apt = ["less"]
post_build = ["python -c 'import six; print(\\"six\\", six.__version__)'"]
env = { PYTHONHASHSEED = "0" }

[environments.small.resources]
cpus = 1
memory = "256m"
"""


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with containers.toml; tests that need other specs write their own."""
    root = make_workspace(tmp_path_factory.mktemp("project"), PROJECT_SPEC, config=None)
    (root / "data.txt").write_text("hello from the workspace\n")
    return root


@pytest.fixture(scope="session")
def engine_config():
    """Config shared by every manager in the session (test image repository)."""
    from traitlets.config import Config

    config = Config()
    config.Builder.image_repository = TEST_REPOSITORY
    return config


@pytest.fixture(scope="session")
def manager(project: Path, engine_config, request: pytest.FixtureRequest):
    """A ContainersManager on the real engine; fails (never skips) when no engine answers."""
    from jupyter_containers.errors import EngineUnavailableError
    from jupyter_containers.manager import ContainersManager

    mgr = ContainersManager(spec_path=project / "containers.toml", config=engine_config)
    try:
        mgr.engine()
    except EngineUnavailableError as exc:
        pytest.fail(f"the integration tests need a Docker engine; run them with 'bash scripts/test.sh': {exc}")
    return mgr


@pytest.fixture(scope="session")
def small_image(manager):
    """The shared environment, built once per session."""
    return manager.build("small")


# Each test session on this host registers its pid here. Test images are content-addressed and shared by
# concurrent sessions (a developer's run beside a CI run, helpers' runs): only the last session to end removes
# them, or one session's cleanup would delete an image another is about to run.
SESSIONS = Path("/tmp/jupyter-containers-test-sessions")


def _live_sessions() -> set[int]:
    """Pids of the registered test sessions that are still running (stale entries are removed)."""
    alive = set()
    for entry in SESSIONS.glob("*"):
        try:
            pid = int(entry.name)
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError):
            entry.unlink(missing_ok=True)
            continue
        except PermissionError:
            pass  # another user's live process
        alive.add(pid)
    return alive


@pytest.fixture(scope="session", autouse=True)
def remove_test_images():
    """Whatever the tests built or started (test repository, test labels) is removed at the end."""
    SESSIONS.mkdir(mode=0o755, exist_ok=True)
    me = SESSIONS / str(os.getpid())
    me.touch()
    if not (_live_sessions() - {os.getpid()}):
        # A disk that persists between runs may start full of an earlier run's (or benchmark's) build cache.
        from jupyter_containers.backends.docker import DockerBackend
        from jupyter_containers.errors import EngineUnavailableError

        try:
            trim_build_cache(DockerBackend())
        except EngineUnavailableError:
            pass
    yield
    me.unlink(missing_ok=True)
    from jupyter_containers.backends.docker import DockerBackend
    from jupyter_containers.errors import EngineUnavailableError

    try:
        _cleanup(DockerBackend(), images=not (_live_sessions() - {os.getpid()}))
    except EngineUnavailableError:
        pass


#: What the engine's build cache may keep after a test session (bytes; ``JC_TEST_BUILD_CACHE_GB`` overrides).
#: Every session builds dozens of uniquely-salted images, so their cache grows by gigabytes per run and, on a
#: machine whose disk persists from run to run, ends in "no space left on device" (a CI run failed so, with
#: 72 GB of cache): an engine that did not start with a GC policy (see ``provision/engine.py``) is trimmed here.
BUILD_CACHE_KEEP = int(float(os.environ.get("JC_TEST_BUILD_CACHE_GB", "10")) * 1e9)


def trim_build_cache(backend) -> None:
    """Trim the engine's build cache to :data:`BUILD_CACHE_KEEP` (least recently used first, BuildKit's rule)."""
    import docker

    try:
        backend.api.prune_builds(keep_storage=BUILD_CACHE_KEEP)
    except docker.errors.APIError:
        pass  # an engine without BuildKit's prune (API < 1.39): nothing to trim


def _cleanup(backend, images: bool = True) -> None:
    """Our test containers, except those a still-running process owns (a concurrent test session on the same
    engine), and -- when ``images`` (no other test session is running) -- our test images."""
    import os

    from jupyter_containers.errors import ConflictError
    from jupyter_containers.manager import _orphaned

    from . import engines

    engines.remove_orphaned_engines(backend.api)  # a crashed session's second engine, and its volume
    for container in backend.list_containers(all=True):
        labels = container.labels
        ours = container.image.startswith("jupyter-containers-test/") or labels.get("io.jupyter.containers.test")
        owner = labels.get("io.jupyter.containers.owner-pid")
        if ours and (owner in (None, str(os.getpid())) or _orphaned(labels)):
            if engines.ENGINE_LABEL in labels:
                engines.remove_engine_container(backend.api, container.id)  # with its volume
            else:
                backend.remove_container(container.id)
    import docker

    if not images:
        return
    # Images a rebuild of the same tag left untagged (a concurrent session's second engine, say).
    for image in backend.api.images(filters={"dangling": True, "label": "io.jupyter.containers.test=true"}):
        try:
            backend.api.remove_image(image["Id"])
        except docker.errors.APIError:
            pass  # in use by a concurrent session's container
    trim_build_cache(backend)
    for image in backend.list_images():
        for tag in image.tags:
            # The second engine's image is kept for the next session (its tag is a hash of its recipe; a new
            # recipe's build removes the old tag): a rebuild costs ~21 s.
            if tag.startswith("jupyter-containers-test/") and not tag.startswith(engines.DIND_REPOSITORY + ":"):
                try:
                    backend.remove_image(tag)
                except ConflictError:
                    pass  # a container of a concurrent test session still uses it
    # The find_links folders' images (images/mounted.py) that no image left was built from: the tests' wheels.
    from jupyter_containers.images.mounted import unused_wheel_images

    for ref in unused_wheel_images(backend.list_images()):
        backend.remove_image(ref)


@pytest.fixture(scope="session")
def second_engine(tmp_path_factory: pytest.TempPathFactory):
    """A second, real Docker engine for the whole session, started when a test first asks for it (~5 s; ~25 s
    more when its image must be built): Docker-in-Docker on the main engine, reached over TCP+TLS
    (``.tls_url``, ``.tls``, ``.api()``, ``.docker_config()``) and ssh (``.ssh_command()``, ``.ssh_env()``),
    with the base image loaded and a stand-in NVIDIA hook (``.hook_calls()``). See tests/engines.py.

    Removed at the end with its volume and credentials; after a crash, by the orphan cleanup.
    """
    from jupyter_containers.backends.docker import DockerBackend
    from jupyter_containers.errors import EngineUnavailableError

    from . import engines

    backend = DockerBackend(api_timeout=600)
    try:
        backend.engine_info()
    except EngineUnavailableError as exc:
        pytest.fail(f"the second engine runs on the main Docker engine, and none answers: {exc}")
    engine = engines.start_second_engine(backend.api, tmp_path_factory.mktemp("second-engine"))
    yield engine
    engine.close()


@pytest.fixture
def second_engine_ssh(second_engine, monkeypatch: pytest.MonkeyPatch):
    """The second engine, with ``ssh`` on this test's PATH reading its ssh config (``~/.ssh`` untouched): the
    docker CLI (``DOCKER_HOST=ssh://second-engine``) and the docker SDK (``use_ssh_client=True``) reach it."""
    monkeypatch.setenv("PATH", second_engine.ssh_env()["PATH"])
    return second_engine


@pytest.fixture(scope="session")
def plain_registry(tmp_path_factory: pytest.TempPathFactory):
    """Debian's docker-registry, plain HTTP on 127.0.0.1 (loopback: insecure by default for the engine), on a
    random port, data in a temporary folder; stopped by its pid at the end. See tests/registry.py."""
    from . import registry

    running = registry.start_plain_registry(tmp_path_factory.mktemp("plain-registry"))
    yield running
    running.close()


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory: pytest.TempPathFactory):
    """docker-registry with htpasswd auth behind TLS (a CA generated here) on the main engine's bridge gateway,
    so the second engine reaches it too; the main engine trusts its CA through /etc/docker/certs.d/HOST:PORT,
    removed at the end with the registry (stopped by its pid)."""
    from jupyter_containers.backends.docker import DockerBackend

    from . import registry

    host = registry.bridge_gateway(DockerBackend().api)
    running = registry.start_tls_registry(tmp_path_factory.mktemp("tls-registry"), host)
    yield running
    running.close()


@pytest.fixture(scope="session")
def swarm(tmp_path_factory: pytest.TempPathFactory, tls_registry):
    """A real three-node Docker Swarm for the whole session, started when a test first asks for it (~15 s):
    three Docker-in-Docker engines (tests/engines.py), ``.manager`` and two ``.workers``, each advertising two
    fake GPUs as ``NVIDIA-GPU`` generic resources and trusting the session's TLS registry (every node pulls
    from it). At the end every node leaves the swarm and the engines are removed with their volumes."""
    from jupyter_containers.backends.docker import DockerBackend

    from . import engines

    assert tls_registry.ca is not None
    running = engines.start_swarm(
        DockerBackend(api_timeout=600).api,
        tmp_path_factory.mktemp("swarm"),
        trust=[(tls_registry.address, tls_registry.ca.read_text())],
    )
    yield running
    running.close()


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Docker config folder as DOCKER_CONFIG for this test (credentials go there, never ~/.docker)."""
    folder = tmp_path / "docker-config"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    return folder
