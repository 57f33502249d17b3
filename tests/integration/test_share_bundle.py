"""export / import-bundle on real engines: with --with-image another engine gets the same lock and image id, no build;
with a find_links folder the wheels travel along and the imported environment builds with the same tag."""

from __future__ import annotations

import json
import tarfile
import uuid
from pathlib import Path

import pytest
from traitlets.config import Config

from jupyter_containers.backends.docker import DockerBackend
from jupyter_containers.cli import main
from jupyter_containers.images.lock import read_lock
from jupyter_containers.manager import ContainersManager
from jupyter_containers.share.bundle import import_bundle

from ..wheels import write_wheel
from .test_find_links import run

pytestmark = pytest.mark.engine


def test_a_bundle_with_its_image_gives_another_engine_the_same_image_without_building(
    manager, small_image, second_engine, engine_config, tmp_path, capsys
):
    # given the shared environment exported with its image (through the CLI)
    bundle = tmp_path / "small.tar.gz"
    spec = str(manager.spec_file())
    assert main(["export", "small", "-o", str(bundle), "--with-image", "-f", spec]) == 0
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("manifest.json"))
    assert names[0] == "manifest.json" and "image.tar" in names
    assert manifest["image"]["image_id"] == small_image.image_id
    # when a colleague whose engine has never seen it imports the bundle
    backend = DockerBackend(config=second_engine.docker_config())
    if backend.image_id(small_image.image) is not None:
        backend.remove_image(small_image.image)  # built there by an earlier test of the session
    assert backend.image_id(small_image.image) is None
    target = tmp_path / "colleague"
    target.mkdir()
    result = import_bundle(bundle, target, backend=backend)
    # then the lock is the same, and so is the image id, with nothing built
    assert read_lock(target / "containers.lock")["small"] == read_lock(manager.spec().lock_path)["small"]
    assert result.image_id == small_image.image_id == backend.image_id(small_image.image)
    config = Config(engine_config)
    config.merge(second_engine.docker_config())
    colleague = ContainersManager(spec_path=target / "containers.toml", config=config)
    built = colleague.build("small", locked=False)
    assert built.built is False and built.image_id == small_image.image_id
    backend.remove_image(small_image.image)


def test_export_without_a_lock_says_to_build_first(tmp_path: Path, capsys):
    (tmp_path / "containers.toml").write_text('[environments.fresh]\npip = ["six"]\n')
    assert main(["export", "fresh", "-o", str(tmp_path / "b.tar.gz"), "-f", str(tmp_path / "containers.toml")]) == 1
    assert "build it once" in capsys.readouterr().err


def test_a_bundle_of_an_environment_with_a_find_links_folder_builds_with_the_same_tag_elsewhere(
    tmp_path: Path, engine_config
):
    # given an environment installing a wheel no index holds from a folder next to its spec, built
    nonce = uuid.uuid4().hex[:12]
    origin = tmp_path / "origin"
    write_wheel(origin / "wheels", value=f"bundled-{nonce}")
    spec = origin / "containers.toml"
    spec.write_text(
        '[environments.private]\nfind_links = ["wheels"]\npip = ["jc-private-demo==1.0.0"]\n'
        f'env = {{ N = "{nonce}" }}\n'
    )
    manager = ContainersManager(spec_path=spec, config=engine_config)
    built = manager.build("private")
    assert built.built
    # when it is exported without its image (through the CLI), the image removed, and the bundle imported into a
    # fresh folder
    bundle = tmp_path / "private.tar.gz"
    assert main(["export", "private", "-o", str(bundle), "-f", str(spec)]) == 0
    manager.backend.remove_image(built.image)
    colleague_folder = tmp_path / "colleague"
    colleague_folder.mkdir()
    import_bundle(bundle, colleague_folder)
    assert (colleague_folder / "wheels" / "jc_private_demo-1.0.0-py3-none-any.whl").read_bytes() == (
        origin / "wheels" / "jc_private_demo-1.0.0-py3-none-any.whl"
    ).read_bytes()
    # then the imported environment has the same tag, builds, and installs the bundled wheel
    colleague = ContainersManager(spec_path=colleague_folder / "containers.toml", config=engine_config)
    assert colleague.builder.plan(colleague.environment("private")).tag == built.image
    rebuilt = colleague.build("private")
    assert rebuilt.built and rebuilt.image == built.image
    assert run(colleague, rebuilt.image, "import jc_private_demo; print(jc_private_demo.VALUE)") == f"bundled-{nonce}"
