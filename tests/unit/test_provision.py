"""Provisioning without an engine: the host's apt mirror, and ``jupyter-containers setup``'s engine address."""

from __future__ import annotations

from jupyter_containers.cli import main
from jupyter_containers.provision.apt import detect_mirror, detect_security_mirror, read_apt_sources


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


def test_setup_uses_the_configured_engine_address_without_a_spec_file(tmp_path, monkeypatch, capsys):
    # given: a folder with no spec file whose config points at an engine address where nothing listens
    (tmp_path / "jupyter_containers_config.py").write_text('c.DockerBackend.base_url = "tcp://127.0.0.1:9"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "no-jupyter-config"))
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:7")  # remote too: even a failure starts nothing
    # when
    code = main(["setup", "--no-install"])
    # then: that address was probed (a remote one: nothing is started or installed), not DOCKER_HOST's
    out, err = capsys.readouterr()
    assert code == 1
    assert "engine: none answers at tcp://127.0.0.1:9" in out
    assert "tcp://127.0.0.1:9 is not a local socket" in err
    assert "127.0.0.1:7" not in out + err


def test_the_dockerd_we_start_keeps_its_build_cache_bounded(tmp_path, monkeypatch):
    """dockerd 20.10 starts with no build-cache collector, and a disk that persists filled with 72 GB of cache
    until builds failed with "no space left on device": the dockerd we start gets BuildKit's GC policy."""
    import json

    from jupyter_containers.provision import engine

    monkeypatch.setattr(engine, "DOCKERD_CONFIG", tmp_path / "etc" / "dockerd.json")
    written = engine._write_dockerd_config()
    assert written == tmp_path / "etc" / "dockerd.json"
    assert json.loads(written.read_text()) == {"builder": {"gc": {"enabled": True, "defaultKeepStorage": "10GB"}}}
    assert [p.name for p in written.parent.iterdir()] == ["dockerd.json"]  # no temporary file left behind
