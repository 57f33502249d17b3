"""The session's second Docker engine (tests/engines.py, fixture ``second_engine``): TLS, host paths, GPUs, ssh.

All real: a Docker-in-Docker engine on the main one, reached over TCP+TLS on 127.0.0.1 and over ssh.
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import pytest

from jupyter_containers.errors import EngineUnavailableError, GpuUnavailableError
from jupyter_containers.spec.parse import parse_resources

from .. import engines
from ..conftest import PROJECT_SPEC
from ..workspace import make_workspace

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def second_manager(second_engine, engine_config, tmp_path_factory: pytest.TempPathFactory):
    """A ContainersManager on the second engine, for a project of its own with the shared test spec (so its
    containers.lock never mixes with the main engine's)."""
    from jupyter_containers.manager import ContainersManager

    root = make_workspace(tmp_path_factory.mktemp("second-project"), PROJECT_SPEC, config=None)
    (root / "data.txt").write_text("hello from a host folder\n")
    from ..gpu_engine import DIND_ULIMITS

    config = copy.deepcopy(engine_config)
    config.merge(second_engine.docker_config())
    # That engine lacks CAP_SYS_RESOURCE: GPU runs there get ulimits it may set (see docs/gpus.md).
    config.DockerBackend.gpu_ulimits = dict(DIND_ULIMITS)
    return ContainersManager(spec_path=root / "containers.toml", config=config)


def run(manager, command: str, **resources):
    out, err = bytearray(), bytearray()
    _, _, result = manager.run(
        "small", ["sh", "-c", command], resources=parse_resources(resources), stdout=out.extend, stderr=err.extend
    )
    return result, out.decode(), err.decode()


def test_it_answers_over_tls_on_loopback_only(second_engine):
    # when the engine is asked with the session's client certificate
    api = second_engine.api()
    info = api.info()
    # then it is a real engine of its own, with a real storage driver
    assert info["Driver"] == "overlay2"
    assert info["ID"] != second_engine.main_api.info()["ID"]
    assert second_engine.tls_url.startswith("tcp://127.0.0.1:")
    # and it has the base image, brought over from the main engine
    assert api.inspect_image(engines.BASE_IMAGE)["Id"] == second_engine.main_api.inspect_image(engines.BASE_IMAGE)["Id"]
    # and both of its ports are published on 127.0.0.1 only
    ports = second_engine.main_api.inspect_container(second_engine.container_id)["NetworkSettings"]["Ports"]
    assert {b["HostIp"] for p in ("2376/tcp", "22/tcp") for b in ports[p]} == {"127.0.0.1"}


def test_a_foreign_client_certificate_is_refused(second_engine, tmp_path: Path):
    import docker
    import requests

    from jupyter_containers.backends.docker import DockerBackend

    # given a client certificate from another CA (trusting the engine's real CA)
    foreign = engines.make_foreign_client(tmp_path, second_engine.tls.ca)
    # when a client presents it, the engine ends the TLS handshake
    with pytest.raises((docker.errors.DockerException, requests.exceptions.RequestException), match="SSL"):
        engines.tls_client(second_engine.tls_url, foreign, timeout=10).version()
    # and through our backend that is an unavailable engine
    config = second_engine.docker_config()
    config.DockerBackend.tls_cert, config.DockerBackend.tls_key = str(foreign.cert), str(foreign.key)
    with pytest.raises(EngineUnavailableError, match=second_engine.tls_url):
        DockerBackend(config=config).engine_info()


def test_the_backend_reaches_it_from_config_or_environment(second_engine, monkeypatch: pytest.MonkeyPatch):
    from jupyter_containers.backends.docker import DockerBackend

    # when DockerBackend gets the engine's address and client certificate as config (c.DockerBackend.tls_*)
    info = DockerBackend(config=second_engine.docker_config()).engine_info()
    # then it talks to that engine (REQUESTS_CA_BUNDLE, set on this machine, does not replace its CA)
    assert info.address == second_engine.tls_url
    assert info.storage_driver == "overlay2"
    # and the docker CLI's environment variables work the same
    monkeypatch.setenv("DOCKER_HOST", second_engine.tls_url)
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(second_engine.tls.ca.parent))
    assert DockerBackend().engine_info().address == second_engine.tls_url


def test_a_manager_builds_there_and_sees_the_host_workspace(second_manager, second_engine):
    # when the shared test environment is built on the second engine and a command runs there
    build = second_manager.build("small")
    result, out, _ = run(second_manager, "cat /workspace/data.txt; python -c 'import six; print(six.__version__)'")
    # then the bind-mounted host folder is visible in the container (same paths in the DinD container)
    assert result.exit_code == 0
    assert out.splitlines() == ["hello from a host folder", "1.16.0"]
    # and the image is on the second engine, the container ran there (and is gone)
    assert second_engine.api().inspect_image(build.image)
    assert not second_engine.api().containers(all=True, filters={"id": result.container_id})


@pytest.mark.parametrize(("gpus", "visible"), [(2, "0,1"), (["1", "3"], "1,3"), ("all", "all")])
def test_gpus_are_granted_there_and_refused_here(second_manager, second_engine, manager, small_image, gpus, visible):
    """The second engine has a stand-in for the NVIDIA Container Toolkit's nvidia-container-runtime-hook (a
    script that logs its call: no GPU exists here), so dockerd there accepts the DeviceRequest and sets
    NVIDIA_VISIBLE_DEVICES as it would on a GPU host; the main engine has no hook and refuses."""
    # when a command asks the second engine for GPUs
    result, out, _ = run(second_manager, "echo $NVIDIA_VISIBLE_DEVICES", gpus=gpus)
    # then the container got the devices the request named
    assert result.exit_code == 0
    assert out.strip() == visible
    # and the (stand-in) hook was called as a prestart hook with that container's OCI state
    calls = [c for c in second_engine.hook_calls() if c["state"].get("id") == result.container_id]
    assert [c["args"] for c in calls] == [["prestart"]]
    assert calls[0]["state"]["bundle"]
    # and the main engine, without the hook, refuses the same request with our error
    with pytest.raises(GpuUnavailableError, match="NVIDIA Container Toolkit"):
        run(manager, "echo $NVIDIA_VISIBLE_DEVICES", gpus=gpus)


def test_ssh_with_the_generated_key(second_engine_ssh):
    engine = second_engine_ssh
    ssh_dir = Path.home() / ".ssh"
    before = sorted(ssh_dir.rglob("*")) if ssh_dir.exists() else None
    # when ssh runs with the session's config (ssh -F <file> second-engine ...)
    version = engine.ssh("docker", "version", "--format", "{{.Server.Version}}").stdout.strip()
    # then the inner engine answers
    assert version == engine.api().version()["Version"]
    # and the docker CLI reaches it at ssh://second-engine (the ssh on PATH adds -F)
    cli = subprocess.run(
        ["docker", "-H", engine.ssh_url, "info", "--format", "{{.ID}}"], capture_output=True, text=True, timeout=60
    )
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.strip() == engine.api().info()["ID"]
    # and the stand-in nvidia-smi there prints its two GPUs
    smi = engine.ssh(
        "nvidia-smi",
        "--query-gpu=index,uuid,utilization.gpu,memory.used,memory.total",
        "--format=csv,noheader,nounits",
    )
    assert smi.stdout.splitlines() == [
        "0, GPU-00000000-0000-0000-0000-000000000000, 0, 0, 16384",
        "1, GPU-00000000-0000-0000-0000-000000000001, 37, 1024, 16384",
    ]
    # and nothing was written to ~/.ssh
    assert (sorted(ssh_dir.rglob("*")) if ssh_dir.exists() else None) == before
