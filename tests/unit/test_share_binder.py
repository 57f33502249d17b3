"""binder export writes what repo2docker reads, pinned from the lock, and importing it back gives the same
environment (no engine: the lock is written as a build would)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jupyter_containers.errors import ConflictError
from jupyter_containers.images.lock import LockEntry, write_lock_entry
from jupyter_containers.manager import ContainersManager
from jupyter_containers.share.binder import export_binder, import_binder
from jupyter_containers.spec.importers import import_source

SPEC = """
[environments.team]
python = "3.11"
pip = ["six>=1.16"]
apt = ["less"]
post_build = ["python -c 'print(1)'", "echo done > $HOME/done.txt"]
env = { PYTHONHASHSEED = "0", GREETING = "hello world" }

[environments.team.resources]
gpus = 1
memory = "2g"
"""

LOCK = LockEntry(
    spec_hash="a" * 64,
    image="jupyter-containers-test/team:aaaaaaaaaaaaaaaa",
    image_id="sha256:" + "b" * 64,
    base="jupyter-containers/base:bookworm",
    base_image_id="sha256:" + "c" * 64,
    python="3.11.2",
    packages=("ipykernel==7.4.0", "six==1.17.0"),
    apt=("less=590-2.1~deb12u2",),
)


@pytest.fixture
def manager(tmp_path: Path) -> ContainersManager:
    (tmp_path / "containers.toml").write_text(SPEC)
    write_lock_entry(tmp_path / "containers.lock", "team", LOCK)
    return ContainersManager(spec_path=tmp_path / "containers.toml")


def test_binder_export_round_trips_through_the_importer(manager, tmp_path):
    # when the environment is exported for Binder
    result = export_binder(manager, "team", tmp_path / "binder", repo="me/project")
    folder = tmp_path / "binder"
    # then repo2docker's files pin what the lock says
    assert (folder / "requirements.txt").read_text().splitlines()[1:] == list(LOCK.packages)
    assert (folder / "runtime.txt").read_text() == "python-3.11\n"
    assert (folder / "apt.txt").read_text() == "less\n"
    assert (folder / "postBuild").stat().st_mode & 0o111 and (folder / "start").stat().st_mode & 0o111
    assert "mybinder.org/v2/gh/me/project/HEAD" in (folder / "README.md").read_text()
    assert any("gpus" in note for note in result.notes) and any("resources" in note for note in result.notes)
    # and importing the folder back gives the same environment (pinned as locked)
    env = import_binder(folder, name="team")
    original = manager.environment("team")
    assert env.pip == LOCK.packages
    assert env.python == "3.11" and env.apt == ("less",)
    assert env.post_build == original.post_build
    assert dict(env.env) == dict(original.env)
    # and the project's own importer reads the same Python packages
    assert import_source(folder, name="team").environment.pip == LOCK.packages


def test_binder_export_never_overwrites_files_it_did_not_write(manager, tmp_path):
    folder = tmp_path / "binder"
    folder.mkdir()
    (folder / "requirements.txt").write_text("mine==1.0\n")
    with pytest.raises(ConflictError, match="--force"):
        export_binder(manager, "team", folder)
    assert (folder / "requirements.txt").read_text() == "mine==1.0\n"
