"""The engine and base-image bootstrap against the real engine (no mocks).

The offline bootstrap runs at most once per session (the ``base_image`` fixture), and only when the engine
has neither ``python:3.11-slim`` nor ``jupyter-containers/base:bookworm``.
"""

from __future__ import annotations

import docker
import pytest

from jupyter_containers.backends.bootstrap import (
    detect_mirror,
    detect_security_mirror,
    ensure_base_image,
    ensure_engine,
    read_apt_sources,
)
from jupyter_containers.errors import EngineUnavailableError

from .conftest import DEFAULT_BASE, OFFLINE_BASE

pytestmark = pytest.mark.engine


class RecordingAPIClient(docker.APIClient):
    """The real client; it only remembers which images were pulled."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pulls: list[tuple] = []

    def pull(self, *args, **kwargs):
        self.pulls.append(args)
        return super().pull(*args, **kwargs)


@pytest.fixture(scope="module")
def api():
    client = docker.APIClient(version="auto", **docker.utils.kwargs_from_env())
    yield client
    client.close()


@pytest.fixture
def offline_base(base_image: str) -> str:
    """The bootstrapped base; its specific checks do not apply when the engine had python:3.11-slim."""
    if base_image != OFFLINE_BASE:
        pytest.skip(f"the engine has {base_image}, so no base was bootstrapped")
    return base_image


def run(api, image: str, script: str) -> tuple[int, str]:
    """Run ``script`` with sh in a throwaway container (no network) and always remove it."""
    container = api.create_container(
        image,
        command=["/bin/sh", "-c", script],
        labels={"io.jupyter.containers.test": "bootstrap"},
        host_config=api.create_host_config(network_mode="none"),
    )
    try:
        api.start(container)
        code = api.wait(container, timeout=120)["StatusCode"]
        return code, api.logs(container, stdout=True, stderr=True).decode(errors="replace")
    finally:
        api.remove_container(container, force=True)


def test_base_has_python_311_with_venv_ssl_sqlite3(api, base_image):
    code, out = run(
        api,
        base_image,
        "python3 -c 'import sys, venv, ssl, sqlite3; print(sys.version_info[:2], ssl.OPENSSL_VERSION)' "
        "&& python3 -m venv /tmp/v && /tmp/v/bin/python -c 'import sqlite3'",
    )
    assert code == 0, out
    assert "(3, 11)" in out


def test_offline_base_has_apt_and_dpkg_database(api, offline_base):
    code, out = run(api, offline_base, "apt-get --version && dpkg -s python3 && cat /etc/apt/sources.list")
    assert code == 0, out
    assert "Status: install ok installed" in out
    assert "bookworm-security" in out and "bookworm-updates" in out
    code, out = run(api, offline_base, "ls /var/lib/apt/lists /var/cache/apt/archives | grep -c '\\.deb$\\|Packages'")
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
    before = api.inspect_image(base_image)["Id"]
    client = RecordingAPIClient(version="auto", **docker.utils.kwargs_from_env())
    messages: list[str] = []
    try:
        again = ensure_base_image(DEFAULT_BASE, client=client, offline_tag=OFFLINE_BASE, log=messages.append)
    finally:
        client.close()
    assert again == base_image
    assert api.inspect_image(again)["Id"] == before
    assert client.pulls == []
    assert messages == []


def test_ensure_engine_reports_the_running_engine(api):
    info = ensure_engine(log=lambda _: None)
    assert info["Version"] == api.version()["Version"]
    assert info["ApiVersion"]


def test_missing_engine_error_says_how_to_get_one():
    messages: list[str] = []
    with pytest.raises(EngineUnavailableError) as caught:
        ensure_engine("unix:///nonexistent.sock", start=False, install=False, log=messages.append)
    text = str(caught.value)
    assert "unix:///nonexistent.sock" in text
    assert "install Docker Engine" in text and "DOCKER_HOST" in text and "start" in text
    assert len(messages) == 1  # one plain line: nothing answers


def test_mirror_from_deb822_sources(tmp_path):
    sources_dir = tmp_path / "sources.list.d"
    sources_dir.mkdir()
    (sources_dir / "a-docker.sources").write_text(
        "Types: deb\nURIs: https://download.docker.com/linux/debian\nSuites: bookworm\nComponents: stable\n"
    )
    (sources_dir / "debian.sources").write_text(
        "Types: deb\n"
        "# http://snapshot.debian.org/archive/debian/20250520T000000Z\n"
        "URIs: http://mirror.example.org/debian/\n"
        "Suites: bookworm bookworm-updates\n"
        "Components: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        "\n"
        "Types: deb\n"
        "URIs: http://mirror.example.org/debian-security\n"
        "Suites: bookworm-security\n"
        "Components: main\n"
    )
    paths = {"sources_list": tmp_path / "missing.list", "sources_dir": sources_dir}
    assert len(read_apt_sources(**paths)) == 3
    assert detect_mirror("bookworm", **paths) == "http://mirror.example.org/debian"
    assert detect_security_mirror("bookworm", **paths) == "http://mirror.example.org/debian-security"


def test_mirror_from_legacy_sources_list(tmp_path):
    legacy = tmp_path / "sources.list"
    legacy.write_text(
        "# deb http://commented.example.org/debian bookworm main\n"
        "deb-src http://src.example.org/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://legacy.example.org/debian bookworm main\n"
        "deb http://legacy.example.org/debian-security bookworm-security main\n"
    )
    paths = {"sources_list": legacy, "sources_dir": tmp_path / "no-such-dir"}
    assert detect_mirror("bookworm", **paths) == "http://legacy.example.org/debian"
    assert detect_security_mirror("bookworm", **paths) == "http://legacy.example.org/debian-security"


def test_mirror_falls_back_to_deb_debian_org(tmp_path):
    paths = {"sources_list": tmp_path / "none.list", "sources_dir": tmp_path / "none.d"}
    assert detect_mirror("bookworm", **paths) == "http://deb.debian.org/debian"
    assert detect_security_mirror("bookworm", **paths) == "http://deb.debian.org/debian-security"
