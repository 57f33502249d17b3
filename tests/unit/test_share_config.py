"""Where a registry comes from (--registry, a target's registry =, the spec's top level), several environments
recorded in one notebook, and reproduce --target's errors (no engine: names and files only)."""

from __future__ import annotations

import nbformat
import pytest

from jupyter_containers.cli import main
from jupyter_containers.errors import NotFoundError, RequestError
from jupyter_containers.manager import ContainersManager
from jupyter_containers.share.metadata import notebook_records, with_record
from jupyter_containers.share.notebook import spec_from_notebook
from jupyter_containers.share.registry import registry_of

SPEC = """
registry = "registry.example.org/team"

[environments.a]
pip = ["six"]

[environments.b]
pip = ["attrs"]
target = "lab"

[targets.lab]
engine = "tcp://127.0.0.1:9"
registry = "127.0.0.1:5000/lab"

[targets.plain]
engine = "tcp://127.0.0.1:9"
"""


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "containers.toml"
    path.write_text(SPEC)
    return path


def test_a_targets_registry_is_used_on_that_target_and_the_top_level_elsewhere(spec):
    manager = ContainersManager(spec_path=spec)
    # the configured engine and a target without one: the top-level registry
    assert registry_of(manager, None) == "registry.example.org/team"
    assert registry_of(manager.for_target("plain"), None) == "registry.example.org/team"
    # the target's own, on that target, and for an environment whose target it is (build routes there)
    assert registry_of(manager.for_target("lab"), None) == "127.0.0.1:5000/lab"
    assert registry_of(manager.for_environment("b"), None) == "127.0.0.1:5000/lab"
    # --registry of run/execute (the manager's) over both, and build/push/pull's own --registry over that
    routed = ContainersManager(spec_path=spec, registry="other.example.org/x", target="lab")
    assert registry_of(routed, None) == "other.example.org/x"
    assert registry_of(routed, "third.example.org/y") == "third.example.org/y"
    # and the manager of a target keeps the --registry it was given
    assert registry_of(ContainersManager(spec_path=spec, registry="r.example.org/z").for_target("lab"), None) == (
        "r.example.org/z"
    )


def test_a_docker_target_may_have_a_registry_and_a_bad_one_names_its_key(tmp_path):
    path = tmp_path / "containers.toml"
    path.write_text('[environments.a]\n[targets.lab]\nengine = "tcp://127.0.0.1:9"\nregistry = "https://x/y"\n')
    with pytest.raises(Exception) as info:
        ContainersManager(spec_path=path).spec()
    assert "targets.lab.registry" in str(info.value)


@pytest.mark.parametrize("command", ["run", "execute"])
def test_run_and_execute_refuse_a_bad_registry_by_name(spec, tmp_path, capsys, command):
    nb = tmp_path / "n.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), str(nb))
    argv = {"run": ["run", "a", "-f", str(spec)], "execute": ["execute", str(nb), "--env", "a", "-f", str(spec)]}
    code = main([*argv[command], "--registry", "user:pw@host/x", *(["--", "true"] if command == "run" else [])])
    err = capsys.readouterr().err
    assert code == 1 and "--registry" in err and "pw@" not in err


def _record(name: str, pip: list[str]) -> dict:
    return {"environment": name, "spec": {"pip": pip}, "lock": None, "image": None, "image_id": None}


def test_several_recorded_environments_are_each_restored_by_name(tmp_path):
    # given a notebook that used two environments interactively
    nb = nbformat.v4.new_notebook()
    nb.metadata.update(with_record(with_record({}, _record("a", ["six"])), _record("b", ["attrs"])))
    path = tmp_path / "two.ipynb"
    nbformat.write(nb, str(path))
    assert sorted(notebook_records(nbformat.read(str(path), as_version=4).metadata)) == ["a", "b"]
    # then without a name it asks for one, naming both; with one it writes that one
    with pytest.raises(RequestError, match="several environments .*a, b"):
        spec_from_notebook(path, tmp_path / "containers.toml")
    result = spec_from_notebook(path, tmp_path / "containers.toml", environment="b")
    assert result.environment == "b" and '"attrs"' in (tmp_path / "containers.toml").read_text()
    with pytest.raises(NotFoundError, match="'c'"):
        spec_from_notebook(path, tmp_path / "other.toml", environment="c")


def test_reproduce_target_must_be_a_target_of_the_workspace(spec, tmp_path, capsys):
    nb = nbformat.v4.new_notebook()
    nb.metadata.update(with_record({}, _record("a", ["six"])))
    path = tmp_path / "r.ipynb"
    nbformat.write(nb, str(path))
    assert main(["reproduce", str(path), "-f", str(spec), "--target", "nowhere"]) == 1
    assert "no target named 'nowhere'" in capsys.readouterr().err
