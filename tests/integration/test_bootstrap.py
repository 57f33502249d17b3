"""The engine and base-image provisioning against the real engine (no mocks).

The offline bootstrap runs at most once per session (the ``base_image`` fixture), and only when the engine
has neither ``python:3.11-slim`` nor ``jupyter-containers/base:bookworm``. The code under test reaches the
engine only through the backend; the tests check its results with docker-py directly.
"""

from __future__ import annotations

import subprocess

import docker
import pytest

from jupyter_containers.backends.base import RunRequest, labels, owner_labels
from jupyter_containers.backends.docker import DockerBackend
from jupyter_containers.errors import BackendError, EngineUnavailableError
from jupyter_containers.provision import base_image as provision_base
from jupyter_containers.provision.base_image import ensure_base_image
from jupyter_containers.provision.engine import ensure_engine
from jupyter_containers.spec.model import Resources

from .conftest import DEFAULT_BASE, OFFLINE_BASE

pytestmark = pytest.mark.engine


class RecordingBackend(DockerBackend):
    """The real backend; it only remembers which images were pulled."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.pulls: list[str] = []

    def pull(self, reference, **kwargs):
        self.pulls.append(reference)
        return super().pull(reference, **kwargs)


@pytest.fixture(scope="module")
def api():
    client = docker.APIClient(version="auto", **docker.utils.kwargs_from_env())
    yield client
    client.close()


@pytest.fixture(scope="module")
def backend() -> DockerBackend:
    return DockerBackend()


@pytest.fixture
def offline_base(base_image: str) -> str:
    """The bootstrapped base; its specific checks do not apply when the engine had python:3.11-slim."""
    if base_image != OFFLINE_BASE:
        pytest.skip(f"the engine has {base_image}, so no base was bootstrapped")
    return base_image


def run(backend: DockerBackend, image: str, script: str) -> tuple[int, str]:
    """Run ``script`` with sh in a throwaway container (no network); the backend always removes it.

    The owner labels keep the end-of-session cleanup of a concurrent test session from removing it mid-run.
    """
    chunks: list[bytes] = []
    request = RunRequest(
        image=image,
        command=["/bin/sh", "-c", script],
        resources=Resources(network=False, timeout=120),
        labels=labels(test="bootstrap", **owner_labels()),
    )
    result = backend.run(request, stdout=chunks.append, stderr=chunks.append)
    return result.exit_code, b"".join(chunks).decode(errors="replace")


def test_base_has_python_311_with_venv_ssl_sqlite3(backend, base_image):
    code, out = run(
        backend,
        base_image,
        "python3 -c 'import sys, venv, ssl, sqlite3; print(sys.version_info[:2], ssl.OPENSSL_VERSION)' "
        "&& python3 -m venv /tmp/v && /tmp/v/bin/python -c 'import sqlite3'",
    )
    assert code == 0, out
    assert "(3, 11)" in out


def test_offline_base_has_apt_and_dpkg_database(backend, offline_base):
    code, out = run(backend, offline_base, "apt-get --version && dpkg -s python3 && cat /etc/apt/sources.list")
    assert code == 0, out
    assert "Status: install ok installed" in out
    assert "bookworm-security" in out and "bookworm-updates" in out
    code, out = run(
        backend, offline_base, "ls /var/lib/apt/lists /var/cache/apt/archives | grep -c '\\.deb$\\|Packages'"
    )
    assert out.strip() == "0", out  # no package lists or downloaded .debs baked in


def test_offline_base_labels_and_config(api, offline_base):
    config = api.inspect_image(offline_base)["Config"]
    assert config["Labels"] == {
        "io.jupyter.containers.managed": "true",
        "io.jupyter.containers.kind": "base",
        "io.jupyter.containers.base.suite": "bookworm",
    }
    assert "LANG=C.UTF-8" in config["Env"]
    assert "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" in config["Env"]
    assert config["Cmd"] == ["/bin/bash"]


def test_second_call_is_local_and_never_pulls(api, base_image):
    # given
    before = api.inspect_image(base_image)["Id"]
    recording = RecordingBackend()
    messages: list[str] = []
    # when
    again = ensure_base_image(DEFAULT_BASE, backend=recording, offline_tag=OFFLINE_BASE, log=messages.append)
    # then
    assert again == base_image
    assert api.inspect_image(again)["Id"] == before
    assert recording.pulls == []
    assert messages == []


def test_without_a_base_and_without_bootstrap_the_error_says_how_to_provide_one(backend):
    # given: neither base is on the engine, and the offline bootstrap is not allowed
    missing, offline = "jupyter-containers-test/no-such-base:1", "jupyter-containers-test/no-such-offline:1"
    messages: list[str] = []
    # when
    with pytest.raises(BackendError) as caught:
        ensure_base_image(missing, backend=backend, offline_tag=offline, allow_bootstrap=False, log=messages.append)
    # then: the pull was tried (and failed: no such image, or no registry) and the error lists the ways out
    assert messages[0] == f"base: {missing} is not on the engine; pulling it"
    assert messages[1].startswith(f"base: cannot pull {missing}: ")
    text = str(caught.value)
    assert f"docker pull {missing}" in text and "docker load" in text and "jupyter-containers setup" in text


def test_an_image_that_fails_its_check_is_removed(api, backend, tmp_path):
    # given: an imported root filesystem without /bin/sh (streamed from tar as the bootstrap does), so the
    # check container cannot even start
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/hostname").write_text("not a base\n")
    tar = subprocess.Popen(["tar", "-C", str(tmp_path), "-c", "."], stdout=subprocess.PIPE)
    try:
        image_id = backend.import_image(tar.stdout, changes=["LABEL io.jupyter.containers.test=bootstrap"])
    finally:
        tar.stdout.close()
        tar.wait()
    messages: list[str] = []
    try:
        # when
        with pytest.raises(BackendError) as caught:
            provision_base._verify(backend, image_id, messages.append)
        # then
        assert "failed its check" in str(caught.value) and "was removed" in str(caught.value)
        assert backend.image_id(image_id) is None
        assert api.containers(all=True, filters={"label": "io.jupyter.containers.kind=bootstrap-check"}) == []
        assert messages == []
    finally:
        backend.remove_image(image_id)


def test_ensure_engine_reports_the_running_engine(api):
    info = ensure_engine(DockerBackend(), log=lambda _: None)
    assert info.version == api.version()["Version"]
    assert info.api_version


def test_missing_engine_error_says_how_to_get_one():
    messages: list[str] = []
    with pytest.raises(EngineUnavailableError) as caught:
        ensure_engine(
            DockerBackend(base_url="unix:///nonexistent.sock"), start=False, install=False, log=messages.append
        )
    text = str(caught.value)
    assert "unix:///nonexistent.sock" in text
    assert "install Docker Engine" in text and "DOCKER_HOST" in text and "start" in text
    assert len(messages) == 1  # one plain line: nothing answers
