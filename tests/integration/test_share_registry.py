"""push / pull / build-from-registry against real registries (Debian's docker-registry, tests/registry.py):
plain HTTP on 127.0.0.1, and htpasswd behind TLS with a generated CA; round trips to the second engine."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from traitlets.config import Config

from jupyter_containers.errors import NotFoundError, RegistryAuthError, RegistryTlsError, RegistryUnavailableError
from jupyter_containers.images.lock import read_lock
from jupyter_containers.manager import ContainersManager
from jupyter_containers.share.registry import pull, push

from ..conftest import PROJECT_SPEC
from ..registry import free_port, trust_in_engine
from ..workspace import make_workspace

pytestmark = pytest.mark.engine


def _copy_of_project(tmp_path: Path, engine_config, *, registry: str | None = None, config=None) -> ContainersManager:
    """The session's shared environment in a folder of the test's own (same spec, so the same image)."""
    spec = (f'registry = "{registry}"\n' if registry else "") + PROJECT_SPEC
    (tmp_path / "project").mkdir(parents=True)
    root = make_workspace(tmp_path / "project", spec, config=None)
    merged = Config(engine_config)
    if config is not None:
        merged.merge(config)
    return ContainersManager(spec_path=root / "containers.toml", config=merged)


def test_push_to_a_plain_loopback_registry_records_the_digest(
    small_image, engine_config, plain_registry, docker_config, tmp_path
):
    # given the shared environment, built
    manager = _copy_of_project(tmp_path, engine_config)
    # when it is pushed
    result = push(manager, "small", plain_registry.repository())
    # then the registry holds its content-addressed tag and its base, and the lock records the digest
    tag = small_image.image.rsplit(":", 1)[1]
    assert plain_registry.tags("team/small") == sorted([tag, f"{tag}-base"])
    lock = read_lock(tmp_path / "project" / "containers.lock")["small"]
    assert lock.digest == f"{plain_registry.repository()}/small@{result.digest}" and result.digest.startswith("sha256:")
    # and no registry name is left on the engine: the image keeps only its own tag
    assert manager.backend.image_id(result.reference) is None


def test_pull_gets_the_same_image_id_after_the_image_is_gone(
    small_image, engine_config, plain_registry, docker_config, tmp_path
):
    # given a pushed environment whose image was then removed from a fresh spec's point of view (another tag)
    manager = _copy_of_project(tmp_path, engine_config)
    push(manager, "small", plain_registry.repository())
    backend = manager.backend
    alias = "jupyter-containers-test/pulled:" + small_image.image.rsplit(":", 1)[1]
    # when it is pulled by that tag
    result = pull(manager, "small", plain_registry.repository(), tag=alias)
    # then the engine has it under the tag, with the same image id
    assert result.image_id == small_image.image_id == backend.image_id(alias)
    backend.remove_image(alias)


def test_registry_failures_are_clear_errors(
    small_image, engine_config, tls_registry, plain_registry, docker_config, tmp_path
):
    manager = _copy_of_project(tmp_path, engine_config)
    # no credentials at all
    with pytest.raises(RegistryAuthError, match="docker login"):
        push(manager, "small", tls_registry.repository())
    # a wrong password
    tls_registry.docker_config(docker_config, password="not-the-password")
    with pytest.raises(RegistryAuthError, match=f"docker login {tls_registry.address}"):
        push(manager, "small", tls_registry.repository())
    # an unknown CA (the engine no longer trusts the registry's certificate)
    tls_registry.docker_config(docker_config)
    hidden = tls_registry.certs_d.with_name(tls_registry.certs_d.name + ".hidden")
    tls_registry.certs_d.rename(hidden)
    try:
        with pytest.raises(RegistryTlsError, match="certs.d"):
            push(manager, "small", tls_registry.repository())
    finally:
        hidden.rename(tls_registry.certs_d)
    # an unreachable registry
    with pytest.raises(RegistryUnavailableError, match="no registry answers"):
        push(manager, "small", f"127.0.0.1:{free_port('127.0.0.1')}/team")
    # an image the registry does not have
    with pytest.raises(NotFoundError, match="not in the registry"):
        pull(manager, "small", plain_registry.repository("nobody"), tag="jupyter-containers-test/x:0000000000000000")
    # and no credential reaches the lock
    assert tls_registry.password not in (tmp_path / "project" / "containers.lock").read_text()


def test_build_on_another_engine_pulls_from_the_team_registry_instead_of_building(
    small_image, engine_config, tls_registry, second_engine, docker_config, tmp_path
):
    # given the environment pushed from this engine to the team's registry (TLS + password)
    tls_registry.docker_config(docker_config)
    origin = _copy_of_project(tmp_path / "origin", engine_config, registry=tls_registry.repository())
    push(origin, "small")
    # and a colleague's engine that trusts the registry, with the same spec (registry = at its top)
    trust_in_engine(second_engine, tls_registry)
    colleague = _copy_of_project(
        tmp_path / "colleague", engine_config, registry=tls_registry.repository(), config=second_engine.docker_config()
    )
    if colleague.backend.image_id(small_image.image) is not None:
        colleague.backend.remove_image(small_image.image)  # built there by an earlier test of the session
    assert colleague.backend.image_id(small_image.image) is None
    events = []
    # when the colleague builds
    result = colleague.build("small", on_event=events.append)
    # then nothing was built: the image was pulled, with the same id, and said so
    assert (
        result.built is False
        and result.pulled == f"{tls_registry.repository()}/small:{small_image.image.rsplit(':', 1)[1]}"
    )
    assert result.image_id == small_image.image_id
    assert any("pulled" in e.text and "built on" in e.text for e in events)
    assert read_lock(tmp_path / "colleague" / "project" / "containers.lock")["small"].image_id == small_image.image_id
    colleague.backend.remove_image(small_image.image)
    shutil.rmtree(tmp_path / "colleague", ignore_errors=True)
