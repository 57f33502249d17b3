"""The notebook widgets, driven through a real local kernel (nbclient is the frontend)."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.engine


def test_widget_builds_and_reports_through_a_kernel(project, manager):
    # given a notebook that shows the UI and presses Build
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "from traitlets.config import Config\n"
            "from jupyter_containers.manager import ContainersManager\n"
            "from jupyter_containers.widgets import ContainersUI\n"
            "config = Config(); config.Builder.image_repository = 'jupyter-containers-test/{env}'\n"
            f"ui = ContainersUI(ContainersManager(spec_path={str(project / 'containers.toml')!r}, config=config),"
            " refresh_seconds=0)\n"
            "ui"
        ),
        nbformat.v4.new_code_cell(
            "ui.memory.value = '300m'\n"
            "print(ui.resources().memory)\n"
            "ui.build(wait=True)\n"
            "print(ui.status.value)\n"
            "print(ui.progress.value == ui.progress.max)"
        ),
    ]
    # when a real kernel runs it
    client = NotebookClient(nb, kernel_name="python3", timeout=600, store_widget_state=True)
    client.execute()
    # then the widget was displayed as a widget view
    first = nb.cells[0].outputs[0]
    assert "application/vnd.jupyter.widget-view+json" in first["data"]
    # and the build finished, the progress bar is full, and the resource controls parse
    lines = "".join(o.get("text", "") for o in nb.cells[1].outputs if o["output_type"] == "stream").splitlines()
    assert lines[0] == str(300 * 2**20)
    assert "built" in lines[1] or "up to date" in lines[1]
    assert lines[2] == "True"
    # and the frontend (nbclient) received the widget state over comms
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    dropdowns = [m["state"] for m in state.values() if m["model_name"] == "DropdownModel"]
    assert dropdowns and dropdowns[0]["_options_labels"] == ["small"]
    bars = [m["state"] for m in state.values() if m["model_name"] == "IntProgressModel"]
    assert bars and bars[0]["value"] == bars[0]["max"] >= 1


def test_widget_lists_running_containers(project, manager, small_image):
    from jupyter_containers.backends.base import RunRequest, labels
    from jupyter_containers.widgets import ContainersUI

    # given a running container of ours
    request = RunRequest(
        image=small_image.image, command=["sleep", "30"], labels=labels(env="small", role="run", **manager.scope())
    )
    container = manager.backend.create(request)
    try:
        container.start()
        # when the widget refreshes
        ui = ContainersUI(manager, refresh_seconds=0)
        # then its table shows it
        assert manager.find_container(container.id).name in ui.containers.value
        assert "small" in ui.containers.value
        ui.close()
    finally:
        manager.backend.remove_container(container.id)
