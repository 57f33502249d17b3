"""spec from-notebook: a notebook's run record alone recreates the spec and the lock (no engine)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from jupyter_containers.cli import main
from jupyter_containers.errors import RequestError
from jupyter_containers.images.lock import LockEntry, read_lock
from jupyter_containers.jobs.provenance import RunRecord
from jupyter_containers.manager import ContainersManager
from jupyter_containers.share.notebook import spec_from_notebook

LOCK = LockEntry(
    spec_hash="a" * 64,
    image="jupyter-containers-test/team:aaaaaaaaaaaaaaaa",
    image_id="sha256:" + "b" * 64,
    base="jupyter-containers/base:bookworm",
    base_image_id="sha256:" + "c" * 64,
    python="3.11.2",
    packages=("six==1.17.0",),
    builder="0.1.0",
    digest="127.0.0.1:5000/team/team@sha256:" + "d" * 64,
)


def _notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")])
    RunRecord.start(
        nb,
        environment="team",
        spec={"pip": ["six"], "env": {"A": "1"}, "resources": {"memory": 268435456, "cpus": 1.0}},
        spec_file="/elsewhere/containers.toml",
        lock=LOCK.to_toml(),
        image=LOCK.image,
        image_id=LOCK.image_id,
        resources={"memory": 268435456},
        parameters={},
        input_path="in.ipynb",
        output_path=str(path),
    )
    nbformat.write(nb, str(path))
    return path


def test_from_notebook_recreates_spec_and_lock(tmp_path):
    nb = _notebook(tmp_path / "ran.ipynb")
    out = tmp_path / "project" / "containers.toml"
    out.parent.mkdir()
    # when the spec is recreated from the notebook alone (through the CLI)
    assert main(["spec", "from-notebook", str(nb), "-o", str(out)]) == 0
    # then the environment and its lock are the recorded ones, digest included
    env = ContainersManager(spec_path=out).environment("team")
    assert env.pip == ("six",) and dict(env.env) == {"A": "1"} and env.resources.memory == 268435456
    assert read_lock(out.parent / "containers.lock")["team"] == LOCK


def test_a_notebook_without_a_record_says_how_to_get_one(tmp_path):
    path = tmp_path / "plain.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), str(path))
    with pytest.raises(RequestError, match="execute"):
        spec_from_notebook(path, tmp_path / "containers.toml")


def test_a_recorded_target_is_left_out_of_the_recreated_environment_with_a_note(tmp_path):
    """The record names the target it ran on, but not that target's [targets] table (someone else's engine
    address and certificates): the recreated environment has none, and a note says how to choose one."""
    from jupyter_containers.share.notebook import environment_from_record

    notes: list[str] = []
    record = {"environment": "train", "spec": {"pip": ["six"], "target": "gpu-box"}}
    env = environment_from_record(record, tmp_path / "containers.toml", None, notes)
    assert env.target is None
    assert env.pip == ("six",) or list(env.pip) == ["six"]
    assert any("'gpu-box'" in note and "--target" in note for note in notes)
