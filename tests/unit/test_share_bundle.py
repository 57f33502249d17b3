"""Bundles are checked before anything lands: paths, member kinds, sizes, hashes, the manifest (no engine)."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from pathlib import Path

import pytest
from traitlets.config import Config

from jupyter_containers.errors import BundleError, ConflictError, SpecError
from jupyter_containers.images.builder import Builder, content_hash
from jupyter_containers.images.dockerfile import render
from jupyter_containers.images.lock import LockEntry, read_lock, write_lock_entry
from jupyter_containers.manager import ContainersManager
from jupyter_containers.share import bundle as bundle_module
from jupyter_containers.share.bundle import export_bundle, import_bundle

from ..wheels import write_wheel

SPEC = """
[environments.team]
pip = ["six==1.16.0"]
requirements = ["reqs/requirements.txt"]
env = { PYTHONHASHSEED = "0" }
"""

LOCK = LockEntry(
    spec_hash="a" * 64,
    image="jupyter-containers-test/team:aaaaaaaaaaaaaaaa",
    image_id="sha256:" + "b" * 64,
    base="jupyter-containers/base:bookworm",
    base_image_id="sha256:" + "c" * 64,
    python="3.11.2",
    packages=("six==1.16.0", "attrs==23.2.0"),
    builder="0.1.0",
)


@pytest.fixture
def project(tmp_path: Path) -> ContainersManager:
    root = tmp_path / "origin"
    (root / "reqs").mkdir(parents=True)
    (root / "containers.toml").write_text(SPEC)
    (root / "reqs" / "requirements.txt").write_text("attrs==23.2.0\n")
    write_lock_entry(root / "containers.lock", "team", LOCK)
    return ContainersManager(spec_path=root / "containers.toml")


def test_a_bundle_round_trip_gives_the_same_spec_lock_and_files(project, tmp_path):
    # given a bundle of an environment with a referenced requirements file
    bundle = tmp_path / "team.tar.gz"
    export_bundle(project, "team", bundle)
    target = tmp_path / "colleague"
    target.mkdir()
    # when it is imported into an empty folder
    result = import_bundle(bundle, target)
    # then the colleague has the same lock, spec and file
    assert read_lock(target / "containers.lock")["team"] == LOCK
    assert (target / "reqs" / "requirements.txt").read_text() == "attrs==23.2.0\n"
    imported = ContainersManager(spec_path=target / "containers.toml").environment("team")
    assert imported.to_dict() == project.environment("team").to_dict()
    assert result.files == ("reqs/requirements.txt",)
    assert not [p for p in target.iterdir() if p.name.startswith(".jc-import")]


def _bundle(path: Path, members: list[tuple[str, bytes]], *, manifest: dict | None = None, kind=None) -> Path:
    files = {name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)} for name, data in members}
    manifest = manifest or {"format": "jupyter-containers-bundle", "version": 1, "environment": "team", "files": files}
    with tarfile.open(path, "w:gz") as tar:
        for name, data in [("manifest.json", json.dumps(manifest).encode()), *members]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            if kind is not None and name == kind[0]:
                info.type = kind[1]
                info.linkname = "/etc/passwd"
                info.size = 0
                tar.addfile(info)
                continue
            tar.addfile(info, io.BytesIO(data))
    return path


def _valid_members(tmp_path: Path, project) -> list[tuple[str, bytes]]:
    bundle = export_bundle(project, "team", tmp_path / "ok.tar.gz").path
    with tarfile.open(bundle) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers() if m.name != "manifest.json"]


@pytest.mark.parametrize(
    "name",
    ["files/../../escape.txt", "/etc/evil", "files/./x", "files//x", "other/x", "files/containers.toml", "files/a\\b"],
)
def test_a_member_path_out_of_the_folder_is_refused_and_nothing_is_written(project, tmp_path, name):
    # given a bundle whose manifest names a path that is not a plain relative one
    members = [*_valid_members(tmp_path, project), (name, b"x")]
    bundle = _bundle(tmp_path / "bad.tar.gz", members)
    target = tmp_path / "colleague"
    target.mkdir()
    # when it is imported, then it is refused, and the folder stays empty
    with pytest.raises(BundleError, match="not allowed"):
        import_bundle(bundle, target)
    assert list(target.iterdir()) == []
    assert not (tmp_path / "escape.txt").exists()


def test_a_tampered_member_is_refused(project, tmp_path):
    # given a bundle whose requirements file changed after its manifest was written
    members = _valid_members(tmp_path, project)
    files = {n: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)} for n, d in members}
    tampered = [(n, b"evil==6.6.6\n" if n.startswith("files/") else d) for n, d in members]
    files["files/reqs/requirements.txt"]["size"] = len(b"evil==6.6.6\n")
    manifest = {"format": "jupyter-containers-bundle", "version": 1, "environment": "team", "files": files}
    bundle = _bundle(tmp_path / "bad.tar.gz", tampered, manifest=manifest)
    target = tmp_path / "colleague"
    target.mkdir()
    # then the hash check refuses it
    with pytest.raises(BundleError, match="sha256"):
        import_bundle(bundle, target)
    assert list(target.iterdir()) == []


def test_links_unlisted_members_oversized_entries_and_foreign_archives_are_refused(project, tmp_path):
    target = tmp_path / "colleague"
    target.mkdir()
    members = _valid_members(tmp_path, project)
    # a symlink member
    files = {n: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)} for n, d in members}
    files["files/link"] = {"sha256": "0" * 64, "size": 0}
    manifest = {"format": "jupyter-containers-bundle", "version": 1, "environment": "team", "files": files}
    link = _bundle(
        tmp_path / "link.tar.gz",
        [*members, ("files/link", b"")],
        manifest=manifest,
        kind=("files/link", tarfile.SYMTYPE),
    )
    with pytest.raises(BundleError, match="not a regular file"):
        import_bundle(link, target)
    # a member the manifest does not list
    extra = tmp_path / "extra.tar.gz"
    manifest = {
        "format": "jupyter-containers-bundle",
        "version": 1,
        "environment": "team",
        "files": {n: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)} for n, d in members},
    }
    _bundle(extra, [*members, ("files/sneaky.txt", b"x")], manifest=manifest)
    with pytest.raises(BundleError, match="not in its manifest"):
        import_bundle(extra, target)
    # a size over the bounds
    huge = dict(manifest, files=dict(manifest["files"], **{"image.tar": {"sha256": "0" * 64, "size": 1 << 40}}))
    with pytest.raises(BundleError, match="out of bounds"):
        import_bundle(_bundle(tmp_path / "huge.tar.gz", members, manifest=huge), target)
    # not a bundle at all
    (tmp_path / "plain.tar.gz").write_bytes(b"not gzip")
    with pytest.raises(BundleError, match="not a readable bundle"):
        import_bundle(tmp_path / "plain.tar.gz", target)
    assert list(target.iterdir()) == []


def test_an_existing_different_environment_is_not_replaced_without_force(project, tmp_path):
    # given a folder whose containers.toml already has another environment called team
    bundle = export_bundle(project, "team", tmp_path / "team.tar.gz").path
    target = tmp_path / "colleague"
    target.mkdir()
    (target / "containers.toml").write_text('[environments.team]\npip = ["other==1.0"]\n')
    # then import refuses, and --force replaces it
    with pytest.raises(ConflictError, match="--force"):
        import_bundle(bundle, target)
    import_bundle(bundle, target, force=True)
    assert ContainersManager(spec_path=target / "containers.toml").environment("team").pip == ("six==1.16.0",)


# ------------------------------------------------------------------ find_links folders
WHEELS_SPEC = """
[environments.team]
pip = ["jc-private-demo==1.0.0"]
find_links = ["wheels", "vendor/empty"]
"""


@pytest.fixture
def wheels_project(tmp_path: Path) -> ContainersManager:
    """An environment installing from a folder with two wheels and from an empty folder (both next to the spec)."""
    root = tmp_path / "origin"
    write_wheel(root / "wheels")
    write_wheel(root / "wheels", name="jc_other", version="2.0.0+local")
    (root / "vendor" / "empty").mkdir(parents=True)
    (root / "containers.toml").write_text(WHEELS_SPEC)
    write_lock_entry(root / "containers.lock", "team", LOCK)
    return ContainersManager(spec_path=root / "containers.toml")


def _spec_hash(manager: ContainersManager) -> str:
    """The spec hash (the tag's digits) the builder computes for ``team`` on a fixed base id, without an engine."""
    env = manager.environment("team")
    inputs, _, _ = Builder(inject_ca_bundle=False, inject_index=False)._inputs(env, "python:3.11-slim", False)
    dockerfile, files = render(env, inputs)
    return content_hash(dockerfile, files, inputs, "sha256:base")


def test_a_bundle_carries_the_wheels_of_find_links_folders_and_the_import_has_the_same_tag(wheels_project, tmp_path):
    # given a bundle of an environment with a find_links folder of two wheels and an empty one
    bundle = tmp_path / "team.tar.gz"
    exported = export_bundle(wheels_project, "team", bundle)
    origin = wheels_project.spec_file().parent
    assert sorted(m for m in exported.files if m.endswith(".whl")) == [
        "files/wheels/jc_other-2.0.0+local-py3-none-any.whl",
        "files/wheels/jc_private_demo-1.0.0-py3-none-any.whl",
    ]
    target = tmp_path / "colleague"
    target.mkdir()
    # when it is imported into a fresh folder
    result = import_bundle(bundle, target)
    # then the wheels are there byte for byte, the empty folder too, and the spec reads as the exported one
    for wheel in (origin / "wheels").iterdir():
        assert (target / "wheels" / wheel.name).read_bytes() == wheel.read_bytes()
    assert (target / "vendor" / "empty").is_dir() and not list((target / "vendor" / "empty").iterdir())
    assert "wheels/jc_private_demo-1.0.0-py3-none-any.whl" in result.files
    colleague = ContainersManager(spec_path=target / "containers.toml")
    assert colleague.environment("team").to_dict() == wheels_project.environment("team").to_dict()
    # and the builder computes the same tag from the imported folder
    assert _spec_hash(colleague) == _spec_hash(wheels_project)
    # and importing it again is no conflict (the same wheels)
    import_bundle(bundle, target)


def test_a_wheel_over_the_cap_fails_the_export_naming_it_and_the_cap(wheels_project, tmp_path, monkeypatch):
    # given a cap on one wheel below the size of one of the environment's wheels
    big = wheels_project.spec_file().parent / "wheels" / "jc_private_demo-1.0.0-py3-none-any.whl"
    monkeypatch.setattr(bundle_module, "MAX_WHEEL", big.stat().st_size - 1)
    # when it is exported, then the export fails naming the wheel and the cap, and writes nothing
    with pytest.raises(BundleError, match=rf"the wheel {re.escape(str(big))} has \d+ bytes, more than a bundle"):
        export_bundle(wheels_project, "team", tmp_path / "team.tar.gz")
    assert not (tmp_path / "team.tar.gz").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".jc-export")]


def test_the_cap_on_all_wheels_and_on_members_fail_the_export(wheels_project, tmp_path, monkeypatch):
    monkeypatch.setattr(bundle_module, "MAX_WHEELS", 100)
    with pytest.raises(BundleError, match=r"in all, more than a bundle carries"):
        export_bundle(wheels_project, "team", tmp_path / "team.tar.gz")
    monkeypatch.setattr(bundle_module, "MAX_WHEELS", 1 << 30)
    monkeypatch.setattr(bundle_module, "MAX_MEMBERS", 3)
    with pytest.raises(BundleError, match=r"would hold 4 files \(2 wheels\), more than the 3"):
        export_bundle(wheels_project, "team", tmp_path / "team.tar.gz")
    assert not (tmp_path / "team.tar.gz").exists()


def test_a_folder_name_import_would_refuse_fails_the_export(tmp_path):
    # given a find_links folder whose name holds a space (import takes plain names only)
    root = tmp_path / "origin"
    write_wheel(root / "my wheels")
    (root / "containers.toml").write_text('[environments.team]\nfind_links = ["my wheels"]\n')
    write_lock_entry(root / "containers.lock", "team", LOCK)
    manager = ContainersManager(spec_path=root / "containers.toml")
    # then the export fails naming it, rather than writing a bundle that cannot be imported
    with pytest.raises(
        BundleError, match=r"cannot carry 'my wheels/jc_private_demo-1.0.0-py3-none-any.whl' \(in the spec's folder\)"
    ):
        export_bundle(manager, "team", tmp_path / "team.tar.gz")


def test_a_find_links_folder_outside_the_spec_folder_fails_the_export(tmp_path):
    # given a wheel folder beside the spec's folder, allowed by configuration
    root = tmp_path / "origin"
    write_wheel(tmp_path / "shared")
    root.mkdir()
    (root / "containers.toml").write_text('[environments.team]\nfind_links = ["../shared"]\n')
    write_lock_entry(root / "containers.lock", "team", LOCK)
    config = Config()
    config.Builder.allowed_reference_roots = [str(tmp_path / "shared")]
    manager = ContainersManager(spec_path=root / "containers.toml", config=config)
    # then the export fails naming the entry: the bundle has no place for it
    with pytest.raises(SpecError, match=r"find_links folder '../shared' is outside the spec's folder") as error:
        export_bundle(manager, "team", tmp_path / "team.tar.gz")
    assert "environments.team.find_links[0]" in str(error.value)


def test_a_wheel_over_the_cap_in_a_manifest_is_refused_at_import(wheels_project, tmp_path):
    members = _valid_members(tmp_path, wheels_project)
    files = {n: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)} for n, d in members}
    files["files/wheels/huge-1.0-py3-none-any.whl"] = {"sha256": "0" * 64, "size": bundle_module.MAX_WHEEL + 1}
    manifest = {"format": "jupyter-containers-bundle", "version": 1, "environment": "team", "files": files}
    target = tmp_path / "colleague"
    target.mkdir()
    with pytest.raises(BundleError, match="huge-1.0-py3-none-any.whl' has a size out of bounds"):
        import_bundle(_bundle(tmp_path / "huge.tar.gz", members, manifest=manifest), target)
    # while a text file keeps the text bound
    files = dict(files)
    del files["files/wheels/huge-1.0-py3-none-any.whl"]
    files["files/notes.txt"] = {"sha256": "0" * 64, "size": bundle_module.MAX_TEXT_FILE + 1}
    with pytest.raises(BundleError, match="notes.txt' has a size out of bounds"):
        import_bundle(_bundle(tmp_path / "text.tar.gz", members, manifest=dict(manifest, files=files)), target)
    assert list(target.iterdir()) == []


def test_an_import_refuses_a_find_links_folder_already_holding_other_wheels(wheels_project, tmp_path):
    # given a target whose wheels/ folder holds a wheel the bundle does not carry
    bundle = export_bundle(wheels_project, "team", tmp_path / "team.tar.gz").path
    target = tmp_path / "colleague"
    write_wheel(target / "wheels", name="jc_stranger")
    # then import refuses even with --force (uv would be offered that wheel too: another tag), and writes nothing
    with pytest.raises(ConflictError, match=r"already holds wheels the bundle does not carry \(jc_stranger-1.0.0"):
        import_bundle(bundle, target, force=True)
    assert sorted(p.name for p in target.iterdir()) == ["wheels"]
    assert [p.name for p in (target / "wheels").iterdir()] == ["jc_stranger-1.0.0-py3-none-any.whl"]


@pytest.mark.parametrize(
    ("folder", "expected"),
    [
        ("files/wheels/jc_private_demo-1.0.0-py3-none-any.whl/x", "is a file of the bundle"),
        ("files/wheels/jc_private_demo-1.0.0-py3-none-any.whl", "is not a folder under files/"),
        ("wheels", "not allowed"),
        ("files/../x", "not allowed"),
        (7, "not allowed"),
    ],
)
def test_a_manifest_folder_that_is_no_folder_under_files_is_refused(wheels_project, tmp_path, folder, expected):
    members = _valid_members(tmp_path, wheels_project)
    files = {n: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)} for n, d in members}
    manifest = {"format": "jupyter-containers-bundle", "version": 1, "environment": "team", "files": files}
    manifest["folders"] = [folder]
    target = tmp_path / "colleague"
    target.mkdir()
    with pytest.raises(BundleError, match=expected):
        import_bundle(_bundle(tmp_path / "bad.tar.gz", members, manifest=manifest), target)
    assert list(target.iterdir()) == []
