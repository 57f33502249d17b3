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
    reproduce,
)

pytestmark = pytest.mark.engine

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SANITIZER = EXAMPLES / "reproduce.cfg"
#: Notebooks of examples/ that run in an environment (execute); magics.ipynb runs in a local kernel instead.
EXECUTED = ["demo.ipynb"]


@pytest.fixture(scope="module")
def ran_demo(tmp_path_factory, engine_config) -> Path:
    """examples/ copied, and demo.ipynb run once with execute (which records its environment)."""
    root = tmp_path_factory.mktemp("examples") / "examples"
    shutil.copytree(EXAMPLES, root)
    for folder in (root, *root.parents):
        if folder == Path("/tmp"):
            break
        folder.chmod(0o755)
    manager = ContainersManager(spec_path=root / "containers.toml", config=engine_config)
    result = manager.execute(ExecuteRequest(notebook=root / "demo.ipynb", environment="demo"), log=lambda _t: None)
    assert result.ok, result.error
    return root


@pytest.mark.parametrize("name", EXECUTED)
def test_every_example_reproduces_identically(ran_demo, engine_config, name):
    # when an executed example is reproduced from its own metadata
    out = ran_demo / name.replace(".ipynb", ".out.ipynb")
    report = reproduce(out, ReproduceOptions(sanitizers=[SANITIZER]), config=engine_config, log=lambda _t: None)
    # then it is the same environment and every output matches
    assert report.status == REPRODUCED, report.text()
    assert report.exit_code == 0 and report.run_status == "completed"


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
