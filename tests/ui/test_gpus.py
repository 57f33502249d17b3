"""The sidebar and the run dialog in a real JupyterLab on the GPU engine (and the main engine's refusal line).

No GPU exists on this machine: the lab's engine is the session's second engine, whose NVIDIA Container Toolkit
hook and nvidia-smi are stand-ins (tests/engines.py): dockerd there accepts --gpus and sets
NVIDIA_VISIBLE_DEVICES as on a GPU host, and nvidia-smi on its host prints fixed figures for two GPUs.
"""

from __future__ import annotations

import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from ..gpu_engine import SPEC, config_text
from ..workspace import make_workspace
from .conftest import SIDEBAR, open_lab, open_left, running_lab, screenshot

pytestmark = pytest.mark.engine

BUILD_SECONDS = 600


@pytest.fixture(scope="module")
def gpu_lab(second_engine, tmp_path_factory: pytest.TempPathFactory):
    root = make_workspace(tmp_path_factory.mktemp("ui-gpu-workspace"), SPEC, config=config_text(second_engine))
    cells = [
        new_code_cell("import os\nprint(os.environ.get('NVIDIA_VISIBLE_DEVICES'))"),
        # Long enough for the sidebar to show the GPU bars of the job's container (a remote engine's workspace is
        # a copy, so a file written here would not end it sooner).
        new_code_cell("import time\ntime.sleep(20)"),
    ]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / "gpu.ipynb")
    (root / "gpu.ipynb").chmod(0o644)
    with running_lab(root, tmp_path_factory.mktemp("ui-gpu-lab-state"), name="lab-gpu") as server:
        yield server


def test_gpu_engine_in_the_sidebar_and_a_dialog_job_with_gpu_bars(browser, gpu_lab):
    """Stand-in NVIDIA hook and nvidia-smi on the lab's engine (no GPU here)."""
    page = open_lab(browser, gpu_lab)
    try:
        sidebar = open_left(page, SIDEBAR[1:])
        # then the engine line says that --gpus works there
        line = sidebar.locator('.jp-Containers-engineGpu[data-gpu="true"]')
        line.wait_for()
        assert line.inner_text() == "GPUs: yes (nvidia device driver)"
        # when the run dialog is given a device id that is none
        sidebar.locator("button.jp-Containers-run").click()
        dialog = page.locator(".jp-Dialog .jp-Containers-runDialog")
        dialog.wait_for()
        dialog.locator('input[name="notebook"]').fill("gpu.ipynb")
        dialog.locator('select[name="environment"]').select_option("gpu")
        dialog.locator('input[name="gpus"]').fill("0,gpu1")
        page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept").click()
        # then it names the field and the value, and opens the form again to fix it
        error = page.locator(".jp-Dialog", has_text="Cannot run the notebook")
        error.wait_for()
        assert "GPUs: 'gpu1' in '0,gpu1' is not a GPU device id" in error.inner_text()
        page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept").click()
        dialog.wait_for()
        assert dialog.locator('input[name="gpus"]').input_value() == "0,gpu1"
        # when it asks for GPUs 0 and 1
        dialog.locator('input[name="gpus"]').fill("0,1")
        page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept").click()
        job = sidebar.locator(".jp-Containers-job").first
        job.wait_for()
        job_id = job.get_attribute("data-job-id")
        assert gpu_lab.api(f"jobs/{job_id}")["resources"]["gpus"] == ["0", "1"]
        # then while it runs its container shows a bar per GPU with the host's figures
        bars = sidebar.locator(".jp-Containers-container .jp-Containers-meter-gpu")
        bars.nth(1).wait_for(timeout=BUILD_SECONDS * 1000)
        labels = [bars.nth(i).locator(".jp-Containers-meterLabel").inner_text() for i in range(bars.count())]
        assert labels == ["GPU 0 0%, 0 B of 16 GiB", "GPU 1 37%, 1 GiB of 16 GiB"]
        assert bars.nth(1).locator('[role="progressbar"]').get_attribute("aria-valuenow") == "37"
        screenshot(page, "gpu-01-sidebar-gpu-bars")
        # and the job saw the devices it asked for
        page.wait_for_selector(f'{SIDEBAR} [data-job-id="{job_id}"][data-status="completed"]', timeout=120_000)
        output = nbformat.read(gpu_lab.root / gpu_lab.api(f"jobs/{job_id}")["output_path"], as_version=4)
        assert json.dumps(output.cells[0].outputs).count("0,1") == 1
    finally:
        page.close()
