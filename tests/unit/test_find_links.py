"""``find_links``: folders of wheels (private or prebuilt) that uv installs from besides the index.

The folders are spec references like ``requirements``: confined to the workspace, checked when the spec is
read and again at every build; their wheels' names and bytes are part of the tag, and they reach the build
only through a bind mount of the install layers.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from jupyter_containers.errors import SpecError
from jupyter_containers.images.builder import Builder, content_hash
from jupyter_containers.images.dockerfile import BuildInputs, render
from jupyter_containers.spec.parse import load_environment, load_spec

from ..wheels import write_wheel

KEY = "environments.x.find_links[0]"


def spec(folder: Path, body: str) -> Path:
    path = folder / "containers.toml"
    path.write_text(body, encoding="utf-8")
    return path


def inputs_of(folder: Path) -> BuildInputs:
    env = load_environment("x", folder / "containers.toml")
    inputs, _, _ = Builder(inject_ca_bundle=False, inject_index=False)._inputs(env, "python:3.11-slim", False)
    return inputs


def planned(folder: Path) -> tuple[str, str]:
    """The Dockerfile and spec hash the builder computes for environment ``x`` (base id fixed)."""
    env = load_environment("x", folder / "containers.toml")
    inputs = inputs_of(folder)
    dockerfile, files = render(env, inputs)
    return dockerfile, content_hash(dockerfile, files, inputs, "sha256:base")


@pytest.fixture
def workspace(tmp_path):
    """A spec folder with a wheels/ folder of one wheel, and a folder beside it with another."""
    ws = tmp_path / "ws"
    write_wheel(ws / "wheels")
    write_wheel(tmp_path / "outside", name="shadow")
    return ws


# ------------------------------------------------------------------ spec errors
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("missing", "find_links folder 'missing' does not exist (looked for"),
        ("wheels/jc_private_demo-1.0.0-py3-none-any.whl", "is a file, not a folder"),
        ("../outside", "find_links folder '../outside' is outside the folder"),
        ("link", "find_links folder 'link' is outside the folder"),
    ],
)
def test_a_bad_folder_is_a_spec_error_naming_the_key_and_the_value(workspace, value, expected):
    # given a spec whose find_links names a missing folder, a file, a folder out of it, or a symlink out of it
    os.symlink(workspace.parent / "outside", workspace / "link")
    path = spec(workspace, f'[environments.x]\nfind_links = ["{value}"]\n')
    # when it is read
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    # then the error names the file, the key and the value
    assert caught.value.key == KEY
    assert expected in str(caught.value)
    assert f"{path}: {KEY}: " in str(caught.value)


def test_a_wheel_that_links_out_of_the_workspace_is_refused(workspace):
    # given a wheels folder inside the workspace holding a symlink to a wheel outside it
    os.symlink(
        workspace.parent / "outside" / "shadow-1.0.0-py3-none-any.whl", workspace / "wheels" / "s-1-py3-none-any.whl"
    )
    path = spec(workspace, '[environments.x]\nfind_links = ["wheels"]\n')
    # when it is read, then the wheel is refused by the name it has in the folder
    with pytest.raises(SpecError, match="wheel 'wheels/s-1-py3-none-any.whl' is outside the folder") as caught:
        load_spec(path)
    assert caught.value.key == KEY


def test_a_file_that_is_not_named_as_a_wheel_is_refused(workspace):
    (workspace / "wheels" / "notes.whl").write_bytes(b"")
    path = spec(workspace, '[environments.x]\nfind_links = ["wheels"]\n')
    with pytest.raises(SpecError, match=r"'wheels/notes.whl' is not a wheel file name \(NAME-VERSION"):
        load_spec(path)


def test_a_folder_listed_twice_is_a_spec_error(workspace):
    path = spec(workspace, '[environments.x]\nfind_links = ["wheels", "wheels"]\n')
    with pytest.raises(SpecError, match="lists a value twice") as caught:
        load_spec(path)
    assert caught.value.key == "environments.x.find_links"


def test_a_folder_swapped_for_a_symlink_after_loading_is_refused_when_building(workspace):
    # given a valid spec, read
    env = load_environment("x", spec(workspace, '[environments.x]\nfind_links = ["wheels"]\n'))
    # when the folder is replaced by a symlink out of the workspace before the build reads it
    (workspace / "wheels").rename(workspace / "old")
    os.symlink(workspace.parent / "outside", workspace / "wheels")
    # then the build refuses it as the parser would have
    with pytest.raises(SpecError, match="outside the folder") as caught:
        Builder(inject_ca_bundle=False, inject_index=False)._inputs(env, "b", False)
    assert caught.value.key == KEY


# ------------------------------------------------------------------ the spec and the tag
def test_the_folder_is_part_of_the_environment(workspace):
    env = load_environment(
        "x", spec(workspace, '[environments.x]\nfind_links = ["wheels"]\npip = ["jc-private-demo"]\n')
    )
    assert env.find_links == ("wheels",)
    assert env.to_dict()["find_links"] == ["wheels"]


def test_the_tag_changes_with_a_wheels_bytes_and_only_then(workspace):
    # given an environment installing from a wheels folder
    spec(workspace, '[environments.x]\nfind_links = ["wheels"]\npip = ["jc-private-demo"]\n')
    first = planned(workspace)
    # when nothing changed, then the hash is the same (no rebuild)
    assert planned(workspace) == first
    # when the wheel is rebuilt with other contents under the same file name
    write_wheel(workspace / "wheels", value="two")
    rebuilt = planned(workspace)
    # then the hash (the tag) and the folder uv reads (so uv's cache cannot serve the old wheel) change
    assert rebuilt[1] != first[1] and rebuilt[0] != first[0]
    # when a wheel is added to the folder, the hash changes again
    write_wheel(workspace / "wheels", name="jc_other")
    assert planned(workspace)[1] not in (first[1], rebuilt[1])
    # and the old bytes give the old hash back
    (workspace / "wheels" / "jc_other-1.0.0-py3-none-any.whl").unlink()
    write_wheel(workspace / "wheels", value="one")
    assert planned(workspace) == first


def test_the_wheels_are_mounted_into_the_install_layers_only(workspace):
    # given an environment with a wheels folder and a requirement file
    (workspace / "requirements.txt").write_text("six\n")
    spec(
        workspace,
        '[environments.x]\nfind_links = ["wheels"]\nrequirements = ["requirements.txt"]\npip = ["jc-private-demo"]\n',
    )
    inputs = inputs_of(workspace)
    (folder,) = inputs.find_links
    assert [name for name, _, _ in inputs.wheels] == [f".jc/find-links/{folder}/jc_private_demo-1.0.0-py3-none-any.whl"]
    # when the Dockerfile is rendered
    dockerfile, files = render(load_environment("x", workspace / "containers.toml"), inputs)
    lines = dockerfile.splitlines()
    flag = f"--find-links /tmp/jupyter-containers/find-links/{folder} "
    mount = (
        f"--mount=type=bind,from=jupyter-containers/wheels:{folder},source=/wheels,"
        f"target=/tmp/jupyter-containers/find-links/{folder} "
    )
    # then every install layer (requirement files, pip list) offers the folder to uv through a bind mount of
    # the folder's image (images/mounted.py), the same for every build: no build's context carries the wheels
    installs = [line for line in lines if "--exact --upgrade" in line]
    assert len(installs) == 2 and all(flag in line and mount in line for line in installs)
    # and nothing else names it: the shared virtualenv layer is the same as without find_links, no COPY brings it
    others = [line for line in lines if line not in installs]
    assert not any("find-links" in line for line in others)
    assert not any(name.startswith(".jc/find-links") for name in files)


def test_a_locked_build_reinstalls_from_the_folder_too(workspace):
    env = load_environment(
        "x", spec(workspace, '[environments.x]\nfind_links = ["wheels"]\npip = ["jc-private-demo"]\n')
    )
    inputs = inputs_of(workspace)
    from dataclasses import replace

    dockerfile, _ = render(env, replace(inputs, locked=["jc-private-demo==1.0.0"]))
    locked = next(line for line in dockerfile.splitlines() if "locked.txt" in line)
    assert f"--no-deps --find-links /tmp/jupyter-containers/find-links/{inputs.find_links[0]} " in locked
    assert f"from=jupyter-containers/wheels:{inputs.find_links[0]},source=/wheels," in locked


def test_without_find_links_nothing_changes(workspace):
    # given the same environment with and without an (empty) find_links list
    spec(workspace, '[environments.x]\npip = ["six"]\n')
    without = planned(workspace)
    spec(workspace, '[environments.x]\npip = ["six"]\nfind_links = []\n')
    # then the Dockerfile and the tag are the same: no wheels, no mount, no flag
    assert planned(workspace) == without
    assert "find-links" not in without[0]


# ------------------------------------------------------------------ the kept wheel hashes
@pytest.mark.parametrize(("mode", "trusted"), [(0o700, True), (0o770, False), (0o777, False)])
def test_a_kept_wheel_hash_is_read_only_from_a_folder_nobody_else_can_write(
    workspace, tmp_path, monkeypatch, mode, trusted
):
    from jupyter_containers.images import builder

    # given a cache folder whose wheel-hashes folder has ``mode`` and holds a planted hash for the wheel as it is now
    monkeypatch.setenv("JUPYTER_CONTAINERS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(builder, "_WHEEL_HASHES", {})
    wheel = workspace / "wheels" / "jc_private_demo-1.0.0-py3-none-any.whl"
    info = wheel.stat()
    memo = (str(wheel), info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    kept = tmp_path / "cache" / "wheel-hashes"
    kept.mkdir(parents=True)
    kept.chmod(mode)
    planted = "0" * 64
    (kept / hashlib.sha256(repr(memo).encode()).hexdigest()[:40]).write_text(planted + "\n")
    # when the wheel is hashed
    sha = builder.wheel_sha256(wheel, file=None, key=KEY)
    # then the planted hash counts only where no other user could have written it; elsewhere the bytes are hashed
    assert sha == (planted if trusted else hashlib.sha256(wheel.read_bytes()).hexdigest())


def test_a_folders_image_is_unused_once_no_environment_image_names_it():
    from jupyter_containers.backends.base import ImageInfo
    from jupyter_containers.images.mounted import unused_wheel_images

    def image(tag, **values):
        return ImageInfo(
            id=f"sha256:{tag}", tags=(tag,), labels={f"io.jupyter.containers.{k}": v for k, v in values.items()}
        )

    images = [
        image("jupyter-containers/wheels:aaaa", kind="tools", role="wheels", folder="aaaa"),
        image("jupyter-containers/wheels:bbbb", kind="tools", role="wheels", folder="bbbb"),
        image("jupyter-containers/wheels:cccc", kind="tools", role="wheels", folder="cccc"),
        image("jupyter-containers/uv:1", kind="tools", role="uv"),
        image("env:1", kind="environment", wheels="aaaa,bbbb"),
        image("env:2", kind="environment", wheels="bbbb"),
        image("base:1", kind="base", wheels="cccc"),  # only environment images count
    ]
    assert unused_wheel_images(images) == ["jupyter-containers/wheels:cccc"]
    # images about to be removed (prune's superseded ones) no longer hold their folders
    assert unused_wheel_images(images, {"env:1"}) == [
        "jupyter-containers/wheels:aaaa",
        "jupyter-containers/wheels:cccc",
    ]


def test_prune_takes_the_images_of_other_uv_versions_only():
    from jupyter_containers.backends.base import ImageInfo
    from jupyter_containers.images.mounted import stale_uv_images

    def image(id_, tags, **values):
        return ImageInfo(id=id_, tags=tags, labels={f"io.jupyter.containers.{k}": v for k, v in values.items()})

    images = [
        image("sha256:a", ("jupyter-containers/uv:0.13.9",), kind="tools", role="uv"),
        image("sha256:b", ("jupyter-containers/uv:0.12.0",), kind="tools", role="uv"),
        image("sha256:c", (), kind="tools", role="uv"),  # an untagged one (reloaded over)
        image("sha256:d", ("jupyter-containers/base:bookworm",), kind="base"),
    ]
    assert stale_uv_images(images, "0.13.9") == ["jupyter-containers/uv:0.12.0", "sha256:c"]
