"""Sharing in a real JupyterLab: the environments a notebook uses are recorded in its metadata.

A ``%%container`` cell in a local kernel sends its environment's record (a comm); the extension writes it into
the open notebook's model, and saving the notebook (as its user does) puts it in the file.
"""

from __future__ import annotations

import json
import os
import re
import time

import nbformat
import pytest

from .conftest import open_left, own_workspace, screenshot

pytestmark = pytest.mark.engine

BUILD_SECONDS = int(os.environ.get("UI_BUILD_SECONDS", 600))
MIMETYPE = "application/vnd.jupyter-containers.environment+json"


def _run_all(page, cells: int) -> None:
    """Run each cell with the toolbar's run button (the first cell is selected when a notebook opens), each
    once the previous one has run (its prompt numbered)."""
    run = page.locator('.jp-NotebookPanel:visible .jp-Toolbar-item [data-command="notebook:run-cell-and-select-next"]')
    # Lab may ask which kernel to start (the notebook names python3): take the one it offers.
    kernel_dialog = page.locator(".jp-Dialog:has-text('Select Kernel') .jp-Dialog-button.jp-mod-accept")
    try:
        kernel_dialog.click(timeout=3_000)
    except Exception:  # noqa: BLE001 - not asked
        pass
    page.locator(".jp-NotebookPanel:visible .jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(
        timeout=60_000
    )
    prompts = page.locator(".jp-NotebookPanel:visible .jp-Cell .jp-InputPrompt")
    for index in range(cells):
        run.click()
        if index < cells - 1:  # the last one may take a build's time: the caller waits for its output
            prompts.nth(index).filter(has_text=re.compile(r"\[\d+\]")).wait_for(timeout=60_000)


def _saved_metadata(path, wait: float = 30.0) -> dict:
    deadline = time.monotonic() + wait
    while True:
        nb = nbformat.read(path, as_version=4)
        if nb.metadata.get("jupyter_containers") or time.monotonic() > deadline:
            return nb
        time.sleep(0.25)


@pytest.fixture(scope="module")
def ui_workspace(tmp_path_factory):
    """This module's own workspace: it builds ``ui`` itself (see own_workspace)."""
    return own_workspace(tmp_path_factory, "ui-share")


@pytest.fixture(scope="module")
def cells_notebook(lab):
    """A notebook of a local kernel with a %%container cell, written before the page loads (the file browser
    lists it); its environment built first, so that the cell prints the same when it runs again (reproduce)."""
    from jupyter_containers.manager import ContainersManager

    ContainersManager.discover(lab.root / "containers.toml").build("ui")
    path = lab.root / "cells.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext jupyter_containers"),
        nbformat.v4.new_code_cell('%%container ui --memory 300m\nprint("inside", 6 * 7)'),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_a_container_cell_records_its_environment_in_the_open_notebook(cells_notebook, page, lab):
    # given a notebook of a local kernel with a %%container cell, open in Lab
    path = cells_notebook
    nb = nbformat.read(path, as_version=4)
    assert "jupyter_containers" not in nb.metadata
    for attempt in range(3):
        try:
            page.goto(lab.page_url("lab/tree/cells.ipynb"))
            break
        except Exception:  # net::ERR_NETWORK_CHANGED while other tests create Docker networks
            if attempt == 2:
                raise
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=60_000)
    page.locator(".jp-NotebookPanel:visible .jp-Notebook").wait_for()
    page.locator(".jp-NotebookPanel:visible .jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(
        timeout=60_000
    )
    # when its cells run
    _run_all(page, len(nb.cells))
    try:
        page.locator(".jp-NotebookPanel:visible .jp-OutputArea-output", has_text="inside 42").wait_for(
            timeout=BUILD_SECONDS * 1000
        )
    finally:
        screenshot(page, "share-00-ran")
    # then the notebook shows as changed; once saved, its metadata holds the environment's record
    page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.jp-mod-dirty[title*='cells.ipynb']").wait_for()
    page.locator(".jp-NotebookPanel:visible .jp-Notebook").click()
    page.keyboard.press("Control+s")
    saved = _saved_metadata(path)
    screenshot(page, "share-01-recorded")
    record = saved.metadata["jupyter_containers"]["environments"]["ui"]
    assert record["environment"] == "ui"
    assert record["spec"]["pip"] == ["six"]
    assert record["image_id"].startswith("sha256:") and record["image"].startswith("jupyter-containers-test/ui:")
    assert record["lock"]["image_id"] == record["image_id"]
    assert record["resources"]["memory"] == 300 * 2**20
    assert record["builder"] and "target" in record and "digest" in record
    # and nothing of it is in the cells' outputs
    assert MIMETYPE not in json.dumps([c.get("outputs", []) for c in saved.cells])
    assert "jupyter_containers" not in json.dumps([c.get("outputs", []) for c in saved.cells])
    # and the toolbar's check (the server's) finds it as the workspace has it
    rows = lab.api("notebooks/check?path=cells.ipynb")["environments"]
    assert [(r["name"], r["status"]) for r in rows] == [("ui", "matches")]


def test_reproduce_from_the_file_browser_opens_its_report(page, lab):
    # given the notebook the previous test recorded and saved
    assert nbformat.read(lab.root / "cells.ipynb", as_version=4).metadata["jupyter_containers"]["environments"]
    open_left(page, "filebrowser")
    item = page.locator('.jp-DirListing-item[data-file-type="notebook"][title*="cells.ipynb"]')
    # when "Reproduce notebook" is chosen in its context menu
    item.click(button="right")
    page.locator('.lm-Menu-item[data-command="jupyter-containers:reproduce"]').click()
    # then the report opens in a tab once the server's operation ends, saying it reproduced
    report = page.locator(".jp-Containers-reportView")
    report.wait_for(timeout=BUILD_SECONDS * 1000)
    screenshot(page, "share-02-reproduce-report")
    assert report.get_attribute("data-status") == "reproduced", lab.api("operations")
    assert report.get_attribute("data-report") == "cells.reproduce.html"
    frame = page.frame_locator(".jp-Containers-reportView iframe")
    frame.locator("h1", has_text="reproduced").wait_for()
    assert "Every output matches" in frame.locator("body").inner_text()
    # and the operation is the server's, with the report beside the notebook
    [operation] = [op for op in lab.api("operations")["operations"] if op["kind"] == "reproduce"]
    assert operation["result"]["mode"] == "local kernel" and (lab.root / "cells.reproduce.html").is_file()
