"""The sidebar's utilization line (``GET utilization``) in a real JupyterLab, with a busy container on the
real engine; its picture is docs/images/utilization.png (``UPDATE_SCREENSHOTS=1``)."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from .conftest import ARTIFACTS, REPO, SIDEBAR, open_left, own_workspace

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def ui_workspace(tmp_path_factory):
    """This module's own workspace: it builds ``ui`` itself (see own_workspace)."""
    return own_workspace(tmp_path_factory, "ui-utilization")


@pytest.fixture
def sidebar(page):
    return open_left(page, SIDEBAR[1:])


def test_the_sidebar_shows_the_targets_utilization(page, sidebar, lab):
    # given a container of ours keeping about half of its one CPU busy
    from traitlets.config import Config

    from jupyter_containers.backends.base import RunRequest, labels
    from jupyter_containers.manager import ContainersManager
    from jupyter_containers.spec.parse import parse_resources

    config = Config()
    config.Builder.image_repository = "jupyter-containers-test/{env}"
    manager = ContainersManager(spec_path=lab.root / "containers.toml", config=config)
    image = manager.build("ui").image
    limits = parse_resources({"cpus": 1, "memory": "128m"})
    busy = (
        "import time\nx = bytearray(32 << 20)\nwhile True:\n"
        "    t = time.time()\n    while time.time() - t < 0.1: pass\n    time.sleep(0.1)\n"
    )
    request = RunRequest(
        image=image,
        command=["python", "-c", busy],
        resources=limits,
        labels=labels(env="ui", role="run", resources=json.dumps(limits.to_dict()), test="true", **manager.scope()),
    )
    container = manager.backend.create(request)
    try:
        container.start()
        # when the sidebar shows the configured engine's line
        line = sidebar.locator('[data-utilization-target="(default)"]')
        line.wait_for()
        # then its CPU and memory figures come from the running container (used / the node's total)
        cpu = line.locator('[data-resource="CPU"]')
        page.wait_for_function(
            "el => Number(el.dataset.percent) > 0",
            arg=cpu.element_handle(),
            timeout=60_000,
        )
        memory = float(line.locator('[data-resource="mem"]').get_attribute("data-percent") or "nan")
        api = next(t for t in lab.api("utilization")["targets"] if t["name"] == "(default)")
        assert memory == pytest.approx(api["utilization"]["memory_percent"], abs=5)
        assert "ctr" in line.inner_text()
        # the picture of the section, once a few samples have come in
        time.sleep(4)
        section = sidebar.locator('.jp-Containers-section[data-section="utilization"]')
        box = sidebar.bounding_box()
        engine = sidebar.locator('.jp-Containers-section[data-section="engine"]').bounding_box()
        part = section.bounding_box()
        top = engine["y"] if engine else part["y"]
        page.screenshot(
            path=str(ARTIFACTS / "utilization.png"),
            clip={"x": box["x"], "y": top, "width": box["width"], "height": part["y"] + part["height"] - top + 8},
        )
        if os.environ.get("UPDATE_SCREENSHOTS"):
            shutil.copyfile(ARTIFACTS / "utilization.png", REPO / "docs" / "images" / "utilization.png")
    finally:
        manager.backend.remove_container(container.id)
