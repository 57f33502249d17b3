"""The Containers sidebar in a real JupyterLab: environments and builds, jobs, running containers.

Screenshots go to test-artifacts/ui/; ``UPDATE_SCREENSHOTS=1`` also refreshes docs/images/sidebar.png.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings

import nbformat
import pytest

from .conftest import ARTIFACTS, REPO, SIDEBAR, open_left, screenshot

pytestmark = pytest.mark.engine

BUILD_SECONDS = 600


def test_sidebar_shows_the_engine_and_the_environments(page, sidebar):
    # given JupyterLab with the extension, in a workspace with one environment
    # when the Containers sidebar is open
    env = sidebar.locator('[data-environment="ui"]')
    # then it shows the engine and the environment with its status and resources
    sidebar.locator('[data-engine="reachable"]').wait_for()
    env.wait_for()
    assert "Docker" in sidebar.locator('[data-engine="reachable"]').inner_text()
    # and that --gpus does not work on this engine (no NVIDIA hook), with what to install
    gpu = sidebar.locator('.jp-Containers-engineGpu[data-gpu="false"]').inner_text()
    assert gpu.startswith("GPUs: none (install the NVIDIA Container Toolkit")
    assert env.get_attribute("data-status") in ("never built", "built", "stale")
    assert "a small environment for the browser tests" in env.inner_text()
    assert "1 CPU, 256 MiB" in env.inner_text()
    screenshot(page, "01-sidebar")


def test_build_shows_its_log_and_ends_built(page, sidebar):
    # given the environment, never built in this session (its nonce is new)
    env = sidebar.locator('[data-environment="ui"]')
    # when Build is clicked
    env.locator("button.jp-Containers-build").click()
    # then it builds, with a progress bar and the live log
    page.wait_for_selector(f'{SIDEBAR} [data-environment="ui"][data-status="building"]')
    log = env.locator(".jp-Containers-buildLog")
    log.wait_for()
    page.wait_for_function(
        "sel => (document.querySelector(sel)?.textContent ?? '').includes('▶')",
        arg=f'{SIDEBAR} [data-environment="ui"] .jp-Containers-buildLog',
    )
    assert env.locator('[role="progressbar"]').count() == 1
    screenshot(page, "02-building")
    # and ends built, the live log replaced by the last build's summary, its log kept (folded)
    page.wait_for_selector(f'{SIDEBAR} [data-environment="ui"][data-status="built"]', timeout=BUILD_SECONDS * 1000)
    last = env.locator('.jp-Containers-lastBuild[data-status="built"]')
    last.wait_for()
    assert env.locator(".jp-Containers-build-progress").count() == 0
    assert last.get_attribute("open") is None
    summary = last.locator("summary").inner_text()
    assert summary.startswith("Last build · ") and "cached" in summary and "MiB" in summary, summary
    last.locator("summary").click()
    assert "▶" in last.locator(".jp-Containers-buildLog").inner_text()
    assert env.locator("button.jp-Containers-build").inner_text() == "Rebuild"
    screenshot(page, "03-built")
    # and after a reload the last build is still there
    page.reload()
    page.locator(f'{SIDEBAR} [data-environment="ui"] .jp-Containers-lastBuild').wait_for()


def test_notebook_runs_as_a_job_and_its_output_opens(page, sidebar, lab):
    # given the notebook open in Lab
    open_left(page, "filebrowser")
    notebook = page.locator('.jp-DirListing-item[data-file-type="notebook"][title*="hello.ipynb"]')
    notebook.dblclick()
    page.locator(".jp-NotebookPanel .jp-Containers-runButton").wait_for()
    # and "Run in container…" in the file browser's context menu for notebooks
    notebook.click(button="right")
    item = page.locator('.lm-Menu-item[data-command="jupyter-containers:run-in-container"]')
    item.wait_for()
    assert "Run in container…" in item.inner_text()
    page.keyboard.press("Escape")
    open_left(page, SIDEBAR[1:])
    # when "Run in container…" on the notebook's toolbar is clicked and the dialog filled in
    page.locator(".jp-NotebookPanel:visible .jp-Containers-runButton").click()
    dialog = page.locator(".jp-Dialog .jp-Containers-runDialog")
    dialog.wait_for()
    assert dialog.locator('input[name="notebook"]').input_value() == "hello.ipynb"
    dialog.locator('select[name="environment"]').select_option("ui")
    dialog.locator('input[name="memory"]').fill("2 gigs")
    dialog.locator('input[name="timeout"]').fill("5m")
    dialog.locator('textarea[name="parameters"]').fill('greeting = "bonjour"')
    page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept").click()
    # and the server refuses a value: the form comes back as filled in, saying why, the field marked
    again = page.locator(".jp-Dialog .jp-Containers-runDialog:has(.jp-Containers-dialogError)")
    again.wait_for()
    assert "memory" in again.locator(".jp-Containers-dialogError").inner_text()
    assert again.locator('input[name="memory"].jp-mod-invalid').input_value() == "2 gigs"
    assert again.locator('textarea[name="parameters"]').input_value() == 'greeting = "bonjour"'
    screenshot(page, "04-run-dialog-refused")
    again.locator('input[name="memory"]').fill("300m")
    screenshot(page, "04-run-dialog")
    page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept").click()
    # then the job shows in the sidebar and completes
    job = sidebar.locator(".jp-Containers-job").first
    job.wait_for()
    job_id = job.get_attribute("data-job-id")
    assert lab.api(f"jobs/{job_id}")["parameters"] == {"greeting": "bonjour"}
    assert lab.api(f"jobs/{job_id}")["resources"]["memory"] == 300 * 2**20
    page.wait_for_selector(f'{SIDEBAR} [data-job-id="{job_id}"][data-status="completed"]', timeout=BUILD_SECONDS * 1000)
    screenshot(page, "05-job-completed")
    # and "Open output" opens the output notebook, with what the container printed
    output_path = lab.api(f"jobs/{job_id}")["output_path"]
    sidebar.locator(f'[data-job-id="{job_id}"] button.jp-Containers-open').click()
    name = output_path.rsplit("/", 1)[-1]
    page.locator(f'.lm-DockPanel-tabBar .lm-TabBar-tab[title*="{name}"]').wait_for()
    page.locator(".jp-NotebookPanel:visible .jp-OutputArea-output", has_text="bonjourbonjour").wait_for()
    screenshot(page, "06-job-output")
    output = nbformat.read(lab.root / output_path, as_version=4)
    assert "bonjourbonjour" in json.dumps(output.cells[-1].outputs)


def test_running_container_shows_usage_and_stops(page, sidebar, lab):
    # given a container of ours running in the environment (as a kernel or job would be)
    from traitlets.config import Config

    from jupyter_containers.backends.base import RunRequest, labels
    from jupyter_containers.manager import ContainersManager
    from jupyter_containers.spec.parse import parse_resources

    config = Config()
    config.Builder.image_repository = "jupyter-containers-test/{env}"
    manager = ContainersManager(spec_path=lab.root / "containers.toml", config=config)
    image = manager.build("ui").image
    limits = {"cpus": 1, "memory": "128m"}
    # about 40% of a CPU and 48 MiB of memory, so that both bars show something
    busy = (
        "import time\n"
        "x = bytearray(48 << 20)\n"
        "while True:\n"
        "    t = time.time()\n"
        "    while time.time() - t < 0.1: pass\n"
        "    time.sleep(0.15)\n"
    )
    request = RunRequest(
        image=image,
        command=["python", "-c", busy],
        resources=parse_resources(limits),
        labels=labels(
            env="ui",
            role="run",
            resources=json.dumps(parse_resources(limits).to_dict()),
            test="true",
            **manager.scope(),
        ),
    )
    container = manager.backend.create(request)
    try:
        container.start()
        # when the sidebar lists it
        item = sidebar.locator(f'[data-container-id="{container.id}"]')
        item.wait_for()
        # then it shows CPU and memory bars against the limits
        cpu = item.locator('.jp-Containers-meter-cpu [role="progressbar"][aria-valuenow]')
        memory = item.locator('.jp-Containers-meter-memory [role="progressbar"][aria-valuenow]')
        cpu.wait_for()
        memory.wait_for()
        page.wait_for_function(
            "sel => Number(document.querySelector(sel)?.getAttribute('aria-valuenow')) >= 20",
            arg=f'{SIDEBAR} [data-container-id="{container.id}"] .jp-Containers-meter-memory [role="progressbar"]',
        )
        assert "of 1 CPU" in item.inner_text()
        assert "of 128 MiB" in item.inner_text()
        # and whose it is, and for how long it has run (it runs the environment's current image)
        owner = item.locator(".jp-Containers-owner").inner_text()
        assert owner.startswith("command (jupyter-containers run) · up "), owner
        assert item.locator(".jp-Containers-outdated").count() == 0
        time.sleep(1)  # let the bars' transitions finish for the picture
        screenshot(page, "07-container")
        # the README's picture: the sidebar down to its last section
        box, last = sidebar.bounding_box(), sidebar.locator(".jp-Containers-section").last.bounding_box()
        height = last["y"] + last["height"] - box["y"] + 16
        page.screenshot(
            path=str(ARTIFACTS / "sidebar.png"),
            clip={"x": box["x"], "y": box["y"], "width": box["width"], "height": height},
        )
        # The committed picture changes only when asked, and only shows this test's container.
        if os.environ.get("UPDATE_SCREENSHOTS"):
            if sidebar.locator(".jp-Containers-container").count() == 1:
                docs = REPO / "docs" / "images"
                docs.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(ARTIFACTS / "sidebar.png", docs / "sidebar.png")
            else:
                warnings.warn("docs/images/sidebar.png not updated: other containers were running", stacklevel=1)
        # when Stop is clicked, it asks first, naming what loses its state; Cancel keeps the container
        item.locator("button.jp-Containers-stop").click()
        dialog = page.locator(".jp-Dialog")
        dialog.wait_for()
        assert "Stop ui?" in dialog.inner_text() and "its state is lost" in dialog.inner_text()
        screenshot(page, "08-stop-confirm")
        dialog.locator("button.jp-mod-reject").click()
        dialog.wait_for(state="detached")
        assert container.id in [c.id for c in manager.backend.list_containers()]
        # and when it is confirmed
        item.locator("button.jp-Containers-stop").click()
        page.locator(".jp-Dialog button.jp-mod-warn").click()
        # then the container is gone, from the sidebar and from the engine
        item.wait_for(state="detached")
        assert container.id not in [c.id for c in manager.backend.list_containers(all=True)]
        screenshot(page, "08-stopped")
    finally:
        if container.id in [c.id for c in manager.backend.list_containers(all=True)]:
            manager.backend.remove_container(container.id)


def test_failed_build_shows_the_step_and_the_log_tail(page, sidebar, lab):
    # given an environment whose post-build command fails, added to the spec while Lab runs
    spec = lab.root / "containers.toml"
    original = spec.read_text()
    spec.write_text(original + '\n[environments.broken]\npost_build = ["echo the build breaks here >&2; exit 4"]\n')
    try:
        page.locator(f"{SIDEBAR} .jp-Toolbar .jp-ToolbarButtonComponent").last.click()  # Refresh
        env = sidebar.locator('[data-environment="broken"]')
        env.wait_for()
        # when it is built from the sidebar
        env.locator("button.jp-Containers-build").click()
        # then it ends failed, naming the step and showing what it printed
        page.wait_for_selector(
            f'{SIDEBAR} [data-environment="broken"][data-status="failed"]', timeout=BUILD_SECONDS * 1000
        )
        error = env.locator(".jp-Containers-buildError")
        error.wait_for()
        assert "post_build_0" in error.inner_text()
        assert "the build breaks here" in error.locator(".jp-Containers-log").inner_text()
        # and its whole log stays open at the failing step
        last = env.locator('.jp-Containers-lastBuild[data-status="failed"]')
        last.wait_for()
        assert last.get_attribute("open") is not None
        assert "post_build" in last.locator(".jp-Containers-failingStep").inner_text()
        env.scroll_into_view_if_needed()
        screenshot(page, "09-build-failed")
    finally:
        spec.write_text(original)


def test_without_an_engine_the_sidebar_says_what_to_do(browser, lab_without_engine):
    # given a lab whose engine address answers nothing
    from .conftest import open_lab

    page = open_lab(browser, lab_without_engine)
    try:
        # when the sidebar opens
        panel = open_left(page, SIDEBAR[1:])
        # then the engine section says that no engine answers, where, and what to do
        callout = panel.locator('[data-engine="unreachable"]')
        callout.wait_for()
        text = callout.inner_text()
        assert "No container engine answers" in text
        assert "no-engine" in text and "scripts/setup.sh" in text
        # and the other sections wait for it instead of repeating the error
        assert "Listed once the container engine answers" in panel.inner_text()
        screenshot(page, "10-no-engine")
    finally:
        page.close()
