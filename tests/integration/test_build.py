"""Building environment images on the real Docker engine (its BuildKit), through a real TLS proxy."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from jupyter_containers.errors import BuildError
from jupyter_containers.images.lock import read_lock
from jupyter_containers.manager import ContainersManager

pytestmark = pytest.mark.engine


def unique_env_value() -> str:
    return uuid.uuid4().hex[:12]


def new_project(tmp_path: Path, body: str) -> Path:
    (tmp_path / "containers.toml").write_text(body)
    return tmp_path / "containers.toml"


def test_build_tags_labels_and_locks(manager, small_image, project):
    # given the shared environment, built once for the session
    # then the image is tagged by spec hash and labelled as ours
    assert small_image.image.startswith("jupyter-containers-test/small:")
    labels = manager.backend.image_labels(small_image.image)
    assert labels["io.jupyter.containers.managed"] == "true"
    assert labels["io.jupyter.containers.env"] == "small"
    assert labels["io.jupyter.containers.kind"] == "environment"  # not the base's inherited "base"
    assert small_image.image.split(":")[1] == labels["io.jupyter.containers.spec-hash"][:16]
    # and the lock next to the spec records what is really installed
    entry = read_lock(project / "containers.lock")["small"]
    assert "six==1.16.0" in entry.packages
    assert entry.python.startswith("3.")
    assert entry.image_id == small_image.image_id
    assert entry.base_image_id.startswith("sha256:")
    assert any(line.startswith("less=") for line in entry.apt)


def test_unchanged_spec_is_not_rebuilt(manager, small_image):
    # when the same spec is built again
    again = manager.build("small")
    # then nothing is built and the same image is returned
    assert again.built is False
    assert again.image == small_image.image
    assert again.image_id == small_image.image_id


def test_uv_reaches_builds_from_its_own_image_not_from_each_context(manager, small_image):
    """uv comes from a small image made byte for byte from its binary (images/mounted.py), loaded once per
    engine: no build context carries its 38 MB (0.7 s of every build here), and a reload gives the same image
    id, so the build steps that BuildKit cached with it stay cached."""
    import io
    import tarfile

    from jupyter_containers.images import mounted
    from jupyter_containers.images.builder import _uv_version

    backend, version = manager.backend, _uv_version()
    tag = mounted.uv_tag(version)
    plan = manager.builder.plan(manager.environment("small"))
    # the install steps mount uv from its image, and the context holds the spec's files only
    assert f"--mount=type=bind,from={tag},source=/uv,target=/tmp/jupyter-containers/bin/uv" in plan.dockerfile
    with tarfile.open(fileobj=io.BytesIO(manager.builder.context_tar(plan))) as tar:
        names = tar.getnames()
    assert ".jc/uv" not in names and all(not n.endswith("/uv") for n in names), names
    # the session's build loaded it; its id is the one the binary gives (computed here, without the engine)
    image_id = backend.image_id(tag)
    assert image_id is not None and image_id == mounted.ensure_uv(backend, version)
    assert backend.image_labels(tag)["io.jupyter.containers.kind"] == "tools"
    probe = "jupyter-containers-test/uv:probe"
    try:
        events = []
        # another engine state: the tag names another image (a stale or foreign one) → loaded again, same id
        backend.tag_image(small_image.image_id, probe)
        assert mounted.ensure_uv(backend, version, events.append, tag=probe) == image_id
        assert backend.image_id(probe) == image_id
        assert any("loading uv" in e.text for e in events)
        # and one that already has it loads nothing
        events.clear()
        assert mounted.ensure_uv(backend, version, events.append, tag=probe) == image_id
        assert events == []
    finally:
        backend.remove_image(probe)
    # uv runs from that mount in the build (the image itself has no uv)
    out = bytearray()
    _, _, result = manager.run("small", ["sh", "-c", "ls /opt/env/bin/uv 2>&1 || true"], stdout=out.extend)
    assert result.exit_code == 0 and "No such file" in out.decode()


def test_post_build_and_env_are_in_the_image(manager, small_image):
    # when the image runs
    out = bytearray()
    _, _, result = manager.run(
        "small",
        ["sh", "-c", "python -c 'import six; print(six.__version__)'; echo $PYTHONHASHSEED; which less"],
        stdout=out.extend,
    )
    # then the packages, env vars and apt packages of the spec are there
    assert result.exit_code == 0
    assert out.decode().split() == ["1.16.0", "0", "/usr/bin/less"]


def test_locked_build_reinstalls_the_locked_versions(tmp_path, engine_config):
    # given an environment built with an old pin, which wrote the lock
    spec = new_project(tmp_path, '[environments.lockme]\npip = ["six==1.16.0"]\n')
    manager = ContainersManager(spec_path=spec, config=engine_config)
    manager.build("lockme")
    # when the spec is loosened (an unlocked build would now install the newest six) and built --locked
    spec.write_text('[environments.lockme]\npip = ["six"]\n')
    locked = manager.build("lockme", locked=True)
    # then the image holds exactly the locked version
    out = bytearray()
    manager.backend.run(
        __import__("jupyter_containers.backends.base", fromlist=["RunRequest"]).RunRequest(
            image=locked.image, command=["python", "-c", "import six; print(six.__version__)"]
        ),
        stdout=out.extend,
    )
    assert out.decode().strip() == "1.16.0"
    assert locked.built is True


def test_locked_build_without_lock_says_how_to_make_one(tmp_path, engine_config):
    spec = new_project(tmp_path, '[environments.nolock]\npip = ["six"]\n')
    manager = ContainersManager(spec_path=spec, config=engine_config)
    with pytest.raises(Exception, match="no lock for environment 'nolock'; build it once without --locked"):
        manager.build("nolock", locked=True)


def test_failed_build_names_the_step_and_leaves_no_tag(tmp_path, engine_config):
    # given a spec whose post-build command fails
    spec = new_project(
        tmp_path,
        f'[environments.broken]\nenv = {{ NONCE = "{unique_env_value()}" }}\n'
        'post_build = ["echo about to fail; echo the reason >&2; exit 3"]\n',
    )
    manager = ContainersManager(spec_path=spec, config=engine_config)
    plan = manager.builder.plan(manager.environment("broken"))
    # when it is built
    with pytest.raises(BuildError) as info:
        manager.build("broken")
    # then the error names the failing step and quotes its log
    error = info.value
    assert "post_build_0" in (error.step or "")
    assert "the reason" in "\n".join(error.log_tail)
    assert "exit code: 3" in str(error)
    # and no tag was left behind, nor any build container
    assert manager.backend.image_id(plan.tag) is None
    assert not [c for c in manager.backend.list_containers(all=True) if c.image == plan.tag]


def test_host_ca_bundle_makes_pypi_reachable_and_stays_out_of_the_image(tmp_path, engine_config):
    """This machine reaches PyPI only through a TLS-intercepting proxy whose CA is in the host bundle."""
    body = f'[environments.tls]\nenv = {{ NONCE = "{unique_env_value()}" }}\npip = ["six"]\n'
    spec = new_project(tmp_path, body)
    # given a build with CA injection switched off
    config = copy.deepcopy(engine_config)
    config.Builder.inject_ca_bundle = False
    without = ContainersManager(spec_path=spec, config=config)
    # then the download fails on the certificate
    with pytest.raises(BuildError) as info:
        without.build("tls")
    assert "certificate" in (str(info.value)).lower() or "tls" in str(info.value).lower()
    # when it is on (the default) the same spec builds
    with_ca = ContainersManager(spec_path=spec, config=engine_config)
    result = with_ca.build("tls")
    assert result.built
    # and the host bundle was only mounted during the build: the image keeps its own bundle
    host_bundle = Path("/etc/ssl/certs/ca-certificates.crt").read_bytes()
    out = bytearray()
    from jupyter_containers.backends.base import RunRequest

    with_ca.backend.run(
        RunRequest(image=result.image, command=["cat", "/etc/ssl/certs/ca-certificates.crt"]), stdout=out.extend
    )
    assert bytes(out) != host_bundle


def test_proxy_settings_never_reach_image_history(tmp_path, engine_config, monkeypatch):
    # given proxy variables on the host (NO_PROXY only, so downloads still work)
    marker = f"secret-{unique_env_value()}.invalid"
    monkeypatch.setenv("NO_PROXY", marker)
    spec = new_project(tmp_path, f'[environments.proxied]\npip = ["six"]\nenv = {{ NONCE = "{marker[:20]}" }}\n')
    manager = ContainersManager(spec_path=spec, config=engine_config)
    # when an image is built
    result = manager.build("proxied")
    assert result.built
    # then the value was passed to the build but is in neither the history nor the config
    history = manager.backend.api.history(result.image)
    config = manager.backend.api.inspect_image(result.image)["Config"]
    assert marker not in json.dumps(history)
    assert marker not in json.dumps(config)


def test_concurrent_builds_of_one_spec_build_once(tmp_path, engine_config):
    # given a new spec that no image exists for
    new_project(tmp_path, f'[environments.race]\npip = ["six"]\nenv = {{ NONCE = "{unique_env_value()}" }}\n')
    (tmp_path / "jupyter_containers_config.py").write_text(
        "c.Builder.image_repository = 'jupyter-containers-test/{env}'\n"
    )
    # when two processes build it at the same time
    command = [sys.executable, "-m", "jupyter_containers.cli", "build", "race", "--json", "-q"]
    procs = [subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    results = [json.loads(p.communicate(timeout=300)[0]) for p in procs]
    # then exactly one built it and both got the same image
    assert sorted(r["built"] for r in results) == [False, True]
    assert results[0]["image"] == results[1]["image"]


def _installed(manager: ContainersManager, image: str) -> list[str]:
    """``pip list --format=freeze`` inside the image (no network, as a kernel runs)."""
    from jupyter_containers.backends.base import RunRequest
    from jupyter_containers.spec.model import Resources

    out = bytearray()
    result = manager.backend.run(
        RunRequest(
            image=image,
            command=["python", "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
            resources=Resources(network=False),
        ),
        stdout=out.extend,
    )
    assert result.exit_code == 0
    return sorted(out.decode().split(), key=str.lower)


def test_an_edited_requirement_file_installs_exactly_what_a_cold_build_installs(tmp_path, engine_config):
    """An edit of a requirement file is built as one sync layer on the previous image (incremental); the image
    must hold exactly the packages of a cold build of the edited spec: both locks and ``pip list`` compared."""
    # given an environment built from a requirement file (the nonce makes its build this test's own)
    project = tmp_path / "project"
    project.mkdir()
    (project / "requirements.txt").write_text("six==1.16.0\nidna==3.10\n")
    body = f'[environments.edits]\nrequirements = ["requirements.txt"]\nenv = {{ NONCE = "{unique_env_value()}" }}\n'
    spec = new_project(project, body)
    manager = ContainersManager(spec_path=spec, config=engine_config)
    first = manager.build("edits")
    assert first.built and not first.incremental_from
    # when one version is bumped, one pin loosened (a cold build takes the newest idna) and one package added
    (project / "requirements.txt").write_text("six==1.17.0\nidna\ncertifi==2024.8.30\n")
    edited = manager.build("edits")
    # then the edit is built on top of the previous image
    assert edited.built and edited.incremental_from == first.image_id
    # and a cold build of the edited spec (every layer, another repository) installs exactly the same
    cold_project = tmp_path / "cold"
    shutil.copytree(project, cold_project, ignore=shutil.ignore_patterns("containers.lock"))
    cold_config = copy.deepcopy(engine_config)
    cold_config.Builder.image_repository = "jupyter-containers-test/cold-{env}"
    cold_manager = ContainersManager(spec_path=cold_project / "containers.toml", config=cold_config)
    cold = cold_manager.builder.build(cold_manager.environment("edits"), no_cache=True)
    assert cold.built and not cold.incremental_from
    assert edited.lock is not None and cold.lock is not None
    assert edited.lock.packages == cold.lock.packages
    assert {"six==1.17.0", "certifi==2024.8.30"} <= set(edited.lock.packages)
    assert "idna==3.10" not in edited.lock.packages
    assert _installed(manager, edited.image) == _installed(cold_manager, cold.image)
    # when a package is removed again
    (project / "requirements.txt").write_text("six==1.17.0\nidna\n")
    removed = manager.build("edits")
    # then the sync removed it too: the image and its lock hold the cold build's packages but that one
    assert removed.incremental_from == edited.image_id
    expected = [p for p in cold.lock.packages if not p.startswith("certifi==")]
    assert removed.lock is not None and list(removed.lock.packages) == expected
    assert _installed(manager, removed.image) == sorted(expected, key=str.lower)
