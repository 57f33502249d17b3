"""[targets.NAME] tables: parsing, errors naming the key, Docker contexts, how /workspace reaches a target."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from jupyter_containers.errors import SpecError
from jupyter_containers.spec.parse import load_spec
from jupyter_containers.targets import backend_settings, resolve_context, workspace_mode


def write(folder: Path, text: str) -> Path:
    path = folder / "containers.toml"
    path.write_text(text + '\n[environments.train]\npip = ["six"]\n')
    return path


def test_a_target_with_tls_files_relative_to_the_spec(tmp_path: Path):
    # given TLS files next to the spec
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("pem")
    path = write(
        tmp_path,
        '[targets.gpu-box]\nengine = "tcp://gpu-box:2376"\n'
        'tls = { ca = "ca.pem", cert = "cert.pem", key = "key.pem" }\n',
    )
    # when it is loaded
    target = load_spec(path).targets["gpu-box"]
    # then the backend gets absolute paths and the remote default of the workspace
    settings = backend_settings(target)
    assert settings["base_url"] == "tcp://gpu-box:2376"
    assert settings["tls_ca"] == str(tmp_path / "ca.pem") and settings["tls_verify"] is True
    assert workspace_mode(target, target.engine or "") == "sync"
    assert workspace_mode(None, "unix:///var/run/docker.sock") == "mount"


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ('[targets.a]\nengine = "tcp://h:1"\ncontext = "x"\n', "targets.a", "exactly one of engine"),
        ('[targets.a]\nengine = "tcp://h:1"\ntls = { ca = "nope.pem" }\n', "targets.a.tls.ca", "does not exist"),
        ('[targets.a]\nengine = "ssh://h"\ntls = { verify = false }\n', "targets.a.tls", "tcp:// engines"),
        ('[targets.a]\nengine = "ftp://h"\n', "targets.a.engine", "ssh://[USER@]HOST"),
        ('[targets.a]\nengine = "ssh://h"\nworkspace = "relative/path"\n', "targets.a.workspace", "sync"),
    ],
)
def test_bad_targets_are_named(tmp_path: Path, text: str, key: str, words: str):
    with pytest.raises(SpecError) as caught:
        load_spec(write(tmp_path, text))
    assert caught.value.key == key and words in str(caught.value)


def test_an_environment_naming_an_unknown_target_is_refused(tmp_path: Path):
    path = tmp_path / "containers.toml"
    path.write_text('[targets.gpu-box]\nengine = "ssh://gpu-box"\n[environments.train]\ntarget = "gpu-bx"\n')
    with pytest.raises(SpecError, match="did you mean 'gpu-box'"):
        load_spec(path)


def test_a_docker_context_is_read_like_the_docker_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # given a context as 'docker context create gpu --docker host=tcp://gpu:2376,ca=…' stores it
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    digest = hashlib.sha256(b"gpu").hexdigest()
    meta = tmp_path / "contexts" / "meta" / digest
    meta.mkdir(parents=True)
    meta.joinpath("meta.json").write_text(
        json.dumps({"Name": "gpu", "Endpoints": {"docker": {"Host": "tcp://gpu:2376"}}})
    )
    tls = tmp_path / "contexts" / "tls" / digest / "docker"
    tls.mkdir(parents=True)
    (tls / "ca.pem").write_text("pem")
    # when it is resolved
    settings = resolve_context("gpu")
    # then it gives the engine and its TLS files
    assert settings["base_url"] == "tcp://gpu:2376" and settings["tls_ca"] == str(tls / "ca.pem")
    # and an unknown one lists those that exist
    with pytest.raises(SpecError, match="contexts there: gpu"):
        resolve_context("gpx")
