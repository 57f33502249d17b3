"""reproduce on the real engine: the examples reproduce identically; a changed output and an environment that
cannot be rebuilt are told apart."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from jupyter_containers.jobs.runner import ExecuteRequest
from jupyter_containers.manager import ContainersManager
from jupyter_containers.share.reproduce import (
    ENVIRONMENT_DIFFERS,
    OUTPUTS_DIFFER,
    REPRODUCED,
    ReproduceOptions,
    execute_local,
    reproduce,
)

from ..workspace import TEST_CONFIG

pytestmark = pytest.mark.engine

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SANITIZER = EXAMPLES / "reproduce.cfg"
#: Notebooks of examples/ that run in an environment as a whole (execute records them) ...
EXECUTED = ["demo.ipynb"]
#: ... and those of a local kernel whose %%container cells record the environments they use (as JupyterLab does).
LOCAL = ["magics.ipynb"]
#: Examples the test suite never runs, and why: their environments take minutes and gigabytes to build. Their
#: spec and configuration are still checked here (test_the_train_example_...); run them by hand.
HEAVY = {
    "train/train.ipynb": "builds PyTorch from PyPI (its CUDA build: several GB of nvidia-* wheels, minutes); "
    "run it by hand: cd examples/train && jupyter-containers execute train.ipynb --env train",
}


@pytest.fixture(scope="module")
def ran_demo(tmp_path_factory, engine_config) -> Path:
    """examples/ copied, and demo.ipynb run once with execute (which records its environment)."""
    root = tmp_path_factory.mktemp("examples") / "examples"
    shutil.copytree(EXAMPLES, root)
    # The local kernel's %%container cells read the project's config, as the test managers do (engine_config).
    (root / "jupyter_containers_config.py").write_text(TEST_CONFIG)
    for folder in (root, *root.parents):
        if folder == Path("/tmp"):
            break
        folder.chmod(0o755)
    manager = ContainersManager(spec_path=root / "containers.toml", config=engine_config)
    result = manager.execute(ExecuteRequest(notebook=root / "demo.ipynb", environment="demo"), log=lambda _t: None)
    assert result.ok, result.error
    return root


@pytest.mark.parametrize("name", [*EXECUTED, *LOCAL])
def test_every_example_reproduces_identically(ran_demo, engine_config, name):
    # given the example run once as its users run it, recording its environments
    out = ran_demo / name.replace(".ipynb", ".out.ipynb")
    if name in LOCAL:
        _, status = execute_local(ran_demo / name, output=out)
        assert status == "completed"
        assert nbformat.read(str(out), as_version=4).metadata["jupyter_containers"]["environments"]
    # when it is reproduced from its own metadata
    report = reproduce(out, ReproduceOptions(sanitizers=[SANITIZER]), config=engine_config, log=lambda _t: None)
    # then it is the same environment and every output matches
    assert report.status == REPRODUCED, report.text()
    assert report.exit_code == 0 and report.run_status == "completed"
    assert report.mode == ("local kernel" if name in LOCAL else "execute")


def test_a_changed_output_is_reported_per_cell_with_an_html_report(ran_demo, engine_config, tmp_path):
    # given the recorded notebook with one output changed afterwards
    nb = nbformat.read(str(ran_demo / "demo.out.ipynb"), as_version=4)
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.outputs]
    changed = code[-2]
    nb.cells[changed].outputs[0]["text"] = "500 x 500: 500 eigenvalues in 0.001s; largest 9999.9\n"
    tampered = ran_demo / "tampered.ipynb"
    nbformat.write(nb, str(tampered))
    # when it is reproduced
    report = reproduce(tampered, ReproduceOptions(sanitizers=[SANITIZER]), config=engine_config, log=lambda _t: None)
    # then the report names that cell only, as an output difference of the same environment
    assert report.status == OUTPUTS_DIFFER and report.exit_code == 1
    assert [c.index for c in report.cells] == [changed]
    assert "9999.9" in report.diff_text
    report.write(tmp_path / "report.html")
    assert "outputs differ" in (tmp_path / "report.html").read_text()
    report.write(tmp_path / "report.json")
    assert json.loads((tmp_path / "report.json").read_text())["cells"][0]["cell"] == changed


def test_an_environment_that_cannot_be_rebuilt_is_not_reported_as_different_outputs(ran_demo, engine_config):
    # given a record whose lock names an image that is gone and a version that does not exist
    nb = nbformat.read(str(ran_demo / "demo.out.ipynb"), as_version=4)
    record = nb.metadata["jupyter_containers"]
    record["image_id"] = record["lock"]["image_id"] = "sha256:" + "0" * 64
    record["lock"]["packages"] = [
        p if not p.startswith("numpy==") else "numpy==0.0.1" for p in record["lock"]["packages"]
    ]
    broken = ran_demo / "broken.ipynb"
    nbformat.write(nb, str(broken))
    # when it is reproduced, then it says the environment could not be rebuilt, and nothing ran
    report = reproduce(broken, config=engine_config, log=lambda _t: None)
    assert report.status == ENVIRONMENT_DIFFERS and report.exit_code == 3
    assert report.run_status is None and "could not rebuild" in " ".join(report.environment_notes)


def test_every_example_notebook_is_run_here_or_named_heavy_with_a_reason():
    # given every notebook under examples/ (outputs of earlier runs aside)
    found = {str(p.relative_to(EXAMPLES)) for p in EXAMPLES.rglob("*.ipynb") if not p.name.endswith(".out.ipynb")}
    # then each is executed and reproduced, runs in a local kernel, or is skipped for a stated reason
    assert found == {*EXECUTED, *LOCAL, *HEAVY}


@pytest.mark.parametrize("name", sorted(HEAVY))
def test_heavy_examples_are_skipped_with_their_reason(name):
    pytest.skip(f"examples/{name} is not run by the test suite: {HEAVY[name]}")


def test_the_train_example_asks_for_every_gpu_and_trains_on_the_cpu_of_an_engine_without(tmp_path, engine_config):
    """examples/train is never built here (HEAVY); its spec, its configuration and the GPU fallback it relies on
    are checked on the main engine, which grants no GPUs (no NVIDIA Container Toolkit on this machine)."""
    import copy

    from jupyter_containers.config import load_config
    from jupyter_containers.spec.model import Resources

    # given the example's folder with its own jupyter_containers_config.py
    root = tmp_path / "train"
    shutil.copytree(EXAMPLES / "train", root)
    config = load_config(root)
    assert config.DockerBackend.gpu_fallback == "cpu"
    config.merge(copy.deepcopy(engine_config))
    manager = ContainersManager(spec_path=root / "containers.toml", config=config)
    env = manager.environment("train")
    assert env.resources.gpus == "all"
    # when its runs' resources are decided on an engine without GPUs
    effective = manager.resources("train")
    # then it runs without GPUs (the notebook says so), with its other limits
    assert manager.backend.engine_info().gpu is False
    assert effective.gpus is None and effective.memory == 4 << 30
    # but a GPU count is kept (the engine refuses it at start, as without the fallback: it names GPUs)
    assert manager.resources("train", Resources(gpus=1)).gpus == 1
    # and the build plan renders (the environment itself is not built: see HEAVY)
    assert "torch" in manager.builder.plan(env, fetch=False).files[".jc/requirements.txt"].decode()
