"""Policy the manager owns: mount confinement and resource layering (no engine needed)."""

from pathlib import Path

import pytest

from jupyter_containers.errors import RequestError
from jupyter_containers.manager import ContainersManager
from jupyter_containers.spec.parse import parse_resources


@pytest.fixture
def manager(tmp_path: Path) -> ContainersManager:
    (tmp_path / "containers.toml").write_text('[environments.e]\n[environments.e.resources]\ncpus = 2\nmemory = "1g"\n')
    (tmp_path / "data").mkdir()
    return ContainersManager(spec_path=tmp_path / "containers.toml", mount_host_ca_bundle=False)


def test_workspace_is_the_spec_folder(manager, tmp_path):
    (mount,) = manager.mounts()
    assert (mount.source, mount.target, mount.read_only) == (tmp_path, "/workspace", False)


def test_mounts_inside_the_workspace_are_allowed(manager, tmp_path):
    mounts = manager.mounts([("data", "/data", True)])
    assert (mounts[1].source, mounts[1].target, mounts[1].read_only) == (tmp_path / "data", "/data", True)


@pytest.mark.parametrize("source", ["/etc", "../", "data/../../"])
def test_mounts_outside_the_workspace_are_refused(manager, source):
    with pytest.raises(RequestError, match="is outside the workspace"):
        manager.mounts([(source, "/x", False)])


def test_symlinks_cannot_escape(manager, tmp_path):
    (tmp_path / "escape").symlink_to("/etc")
    with pytest.raises(RequestError, match="is outside the workspace"):
        manager.mounts([("escape", "/x", True)])


def test_configured_roots_are_allowed(tmp_path):
    (tmp_path / "containers.toml").write_text("[environments.e]\n")
    manager = ContainersManager(
        spec_path=tmp_path / "containers.toml", allowed_mount_roots=["/usr/share"], mount_host_ca_bundle=False
    )
    assert manager.mounts([("/usr/share", "/share", True)])[1].source == Path("/usr/share")


def test_relative_targets_are_refused(manager):
    with pytest.raises(RequestError, match="must be an absolute path"):
        manager.mounts([("data", "data", False)])


def test_run_resources_override_the_spec(manager):
    resources = manager.resources("e", parse_resources({"memory": "256m"}))
    assert (resources.cpus, resources.memory) == (2.0, 256 * 2**20)
