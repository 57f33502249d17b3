"""Bundles are checked before anything lands: paths, member kinds, sizes, hashes, the manifest (no engine)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from jupyter_containers.errors import BundleError, ConflictError
from jupyter_containers.images.lock import LockEntry, read_lock, write_lock_entry
from jupyter_containers.manager import ContainersManager
from jupyter_containers.share.bundle import export_bundle, import_bundle

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
