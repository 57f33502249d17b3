"""The Lab experience (issue 13) in a real JupyterLab, in a workspace of this module's own (its spec is
edited, its environment rebuilt; its nonce is its own): spec edits show at once, the target picker, whose
each container is (grouped by notebook or environment), the notebook toolbar's environments, "Add package…"
with "Open spec", "Restart on the new image", and a job's output opened without a kernel.

The package index is a loopback HTTP server answering PyPI's JSON API for ``six`` only (the check must not
depend on PyPI; the rebuild itself installs from the configured index, as every build of these tests does).
The second target is an address where no engine listens (a reachable second engine would add a minute of
set-up: what is tested here is the picker and that the sidebar's requests carry the target).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import nbformat
import pytest

from ..workspace import make_workspace
from .conftest import ARTIFACTS, CONFIG, NONCE, REPO, SIDEBAR, SPEC, Lab, open_lab, open_left, running_lab, screenshot

pytestmark = pytest.mark.engine

BUILD_SECONDS = 600
#: How soon a spec edit must show (the server's watch answers within a quarter second; the old polling
#: took 6 s and more).
SPEC_SHOWS_MS = 4000
HEAD = "# The Lab experience tests' workspace: 'Add package…' must keep this comment.\n"
TARGET = '\n[targets.elsewhere]\nengine = "tcp://127.0.0.1:9"  # nothing listens here\n'


class _Index(BaseHTTPRequestHandler):
    """PyPI's JSON API (``/pypi/NAME/json``) for one project, ``six``, with two releases."""

    def do_GET(self) -> None:
        if self.path.rstrip("/") != "/pypi/six/json":
            self.send_error(404, "Not Found")
            return
        body = json.dumps(
            {"info": {"name": "six", "version": "1.17.0"}, "releases": {"1.16.0": [{}], "1.17.0": [{}]}}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def index() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Index)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/pypi"
    finally:
        server.shutdown()
        server.server_close()


def _notebook(path: Path, sources: list[str], kernel: str = "python3") -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, index: str) -> Iterator[Lab]:
    """A lab of this module's own workspace: the same ``ui`` environment as the other UI tests (its image is
    a cache hit once they built it), a second target, notebooks for a kernel, a session and a job."""
    root = tmp_path_factory.mktemp("ui-experience")
    # Its own nonce: its builds must not make the other modules' first build a cache hit.
    make_workspace(root, HEAD + SPEC.replace(NONCE, uuid.uuid4().hex[:12]) + TARGET, config=CONFIG)
    _notebook(root / "kernel.ipynb", ["import os\nos.environ.get('UI_TEST_NONCE')"], kernel="containers-ui")
    _notebook(root / "session.ipynb", ["%load_ext jupyter_containers", "%%container ui\nprint('in the container')"])
    _notebook(root / "other.ipynb", ["%%container nowhere\nprint(1)"])
    _notebook(root / "hello.ipynb", ["print('hello from a job')"])
    state = tmp_path_factory.mktemp("ui-experience-state")
    with running_lab(
        root,
        state,
        f"--ContainersService.package_index={index}",
        "--LabApp.expose_app_in_browser=True",
        # As the extension's own config sets it (the container kernels of this workspace, in memory).
        "--ServerApp.kernel_spec_manager_class=jupyter_containers.kernel.kernelspec.ContainersKernelSpecManager",
        name="lab-experience",
    ) as server:
        yield server
    _remove_containers(root)


def _remove_containers(root: Path) -> None:
    """Whatever of this workspace still runs (a session whose kernel was killed with the lab)."""
    from traitlets.config import Config

    from jupyter_containers.manager import ContainersManager

    config = Config()
    config.Builder.image_repository = "jupyter-containers-test/{env}"
    manager = ContainersManager(spec_path=root / "containers.toml", config=config)
    for container in manager.containers(usage=False):
        manager.backend.remove_container(container["id"])


@pytest.fixture(scope="module")
def page(lab: Lab, browser):
    page = open_lab(browser, lab)
    # The page's errors, for a failing test's reader.
    log = open(ARTIFACTS / "lab-experience-console.log", "w")
    page.on(
        "console",
        lambda message: (
            log.write(f"{message.type}: {message.text}\n") if message.type in ("error", "warning") else None
        ),
    )
    page.on("pageerror", lambda error: log.write(f"pageerror: {error}\n"))
    yield page
    log.close()


@pytest.fixture
def sidebar(page):
    return open_left(page, SIDEBAR[1:])


def _call(lab: Lab, method: str, path: str, body: object = None) -> Any:
    request = urllib.request.Request(
        f"{lab.url}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {lab.token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def _picture(page, locator, name: str) -> None:
    """A README picture of one part of the page: test-artifacts/ui/NAME.png, and docs/images/NAME.png with
    UPDATE_SCREENSHOTS=1."""
    box = locator.bounding_box()
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), clip={"x": box["x"], "y": box["y"], "width": box["width"], "height": box["height"]})
    if os.environ.get("UPDATE_SCREENSHOTS"):
        docs = REPO / "docs" / "images"
        docs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, docs / f"{name}.png")


def _run_all(page, name: str) -> None:
    """Open a notebook of the root and run all its cells (through Lab's own commands)."""
    page.evaluate(f"() => {{ jupyterapp.commands.execute('docmanager:open', {{ path: '{name}' }}); }}")
    page.locator(f'.lm-DockPanel-tabBar .lm-TabBar-tab[title*="{name}"]').wait_for()
    page.locator(".jp-NotebookPanel:visible .jp-Notebook").wait_for()
    page.wait_for_function(
        "() => jupyterapp.shell.currentWidget?.sessionContext?.session?.kernel?.status === 'idle'", timeout=120_000
    )
    page.evaluate("() => { jupyterapp.commands.execute('notebook:run-all-cells'); }")


def test_a_spec_edit_shows_at_once_replacing_old_errors(page, sidebar, lab):
    # given the sidebar showing the environment
    env = sidebar.locator('.jp-Containers-environment[data-environment="ui"]')
    env.wait_for()
    page.wait_for_timeout(1500)  # the watch has its first version
    spec = lab.root / "containers.toml"
    good = spec.read_text()
    errors = sidebar.locator(".jp-Containers-environments .jp-Containers-error")
    try:
        # when the spec is edited into an invalid one
        spec.write_text(good.replace("[environments.ui.resources]", "[environments.ui.resources\n"))
        # then its error shows within a second or so, instead of the environments (no "built / Rebuild")
        errors.first.wait_for(timeout=SPEC_SHOWS_MS)
        assert "containers.toml" in errors.first.inner_text()
        assert sidebar.locator(".jp-Containers-environments [data-environment]").count() == 0
        screenshot(page, "11-spec-invalid")
        # when it is fixed
        spec.write_text(good)
        # then the error is gone and the environment is back, as soon
        env.wait_for(timeout=SPEC_SHOWS_MS)
        errors.first.wait_for(state="detached", timeout=SPEC_SHOWS_MS)
        # and a change of a value shows too (resources here)
        spec.write_text(good.replace('memory = "256m"', 'memory = "300m"', 1))
        page.wait_for_function(
            "sel => (document.querySelector(sel)?.textContent ?? '').includes('300 MiB')",
            arg=f'{SIDEBAR} [data-environment="ui"]',
            timeout=SPEC_SHOWS_MS,
        )
    finally:
        spec.write_text(good)
    env.locator(".jp-Containers-meta", has_text="256 MiB").wait_for(timeout=SPEC_SHOWS_MS)


def test_b_target_picker_sends_the_target(page, sidebar, lab):
    # given a spec with a second target
    picker = sidebar.locator("select.jp-Containers-target")
    picker.wait_for()
    options = picker.locator("option").all_inner_texts()
    assert options[0].startswith("(default)") and any(o.startswith("elsewhere") for o in options), options
    # when it is picked
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    picker.select_option("elsewhere")
    # then the sidebar shows that engine (no engine answers there), asking for it by name
    sidebar.locator('[data-engine="unreachable"]').wait_for()
    for endpoint in ("engine", "environments", "containers"):
        assert any(f"/jupyter-containers/api/{endpoint}?target=elsewhere" in url for url in urls), (endpoint, urls)
    assert "127.0.0.1:9" in sidebar.locator('[data-engine="unreachable"]').inner_text()
    screenshot(page, "12-target-picker")
    # and back on the default target, the local engine again
    picker.select_option("")
    sidebar.locator('[data-engine="reachable"]').wait_for()
    # and the run dialog offers the targets, and sends the one picked as the job's target
    sidebar.locator("button.jp-Containers-run").click()
    dialog = page.locator(".jp-Dialog .jp-Containers-runDialog")
    dialog.wait_for(timeout=60_000)
    dialog.locator('input[name="notebook"]').fill("hello.ipynb")
    dialog.locator('select[name="environment"]').select_option("ui")
    assert dialog.locator('select[name="target"] option').count() == 2
    dialog.locator('select[name="target"]').select_option("elsewhere")
    with page.expect_request(
        lambda r: r.url.split("?")[0].endswith("/jupyter-containers/api/jobs") and r.method == "POST"
    ) as req:
        page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept").click()
    assert req.value.post_data_json["target"] == "elsewhere"
    # (the job fails there, or the server refuses it and the form comes back: either way, close it)
    page.wait_for_timeout(1000)
    screenshot(page, "12-run-dialog-target")
    for _ in range(5):
        if not page.locator(".jp-Dialog").count():
            break
        page.keyboard.press("Escape")
        page.wait_for_timeout(300)
    assert page.locator(".jp-Dialog").count() == 0


def test_c_containers_say_whose_they_are_grouped(page, sidebar, lab):
    # given the environment built, a notebook with a container kernel, and one with a %%container session
    _call(lab, "POST", "jupyter-containers/api/environments/ui/build", {})
    page.wait_for_selector(f'{SIDEBAR} [data-environment="ui"][data-status="built"]', timeout=BUILD_SECONDS * 1000)
    _run_all(page, "kernel.ipynb")
    _run_all(page, "session.ipynb")
    page.locator(".jp-NotebookPanel:visible .jp-OutputArea-output", has_text="in the container").wait_for(
        timeout=120_000
    )
    open_left(page, SIDEBAR[1:])
    # then each row says which notebook it belongs to, kernels and sessions alike
    kernel = sidebar.locator(".jp-Containers-container", has_text="kernel of kernel.ipynb")
    session = sidebar.locator(".jp-Containers-container", has_text="%%container session of session.ipynb")
    kernel.wait_for(timeout=60_000)
    session.wait_for(timeout=60_000)
    # when grouped by notebook
    sidebar.locator("select.jp-Containers-groupBy").select_option("notebook")
    # then each notebook has its group
    assert sidebar.locator('[data-group="kernel.ipynb"] .jp-Containers-container').count() == 1
    assert sidebar.locator('[data-group="session.ipynb"] .jp-Containers-container').count() == 1
    screenshot(page, "13-grouped-by-notebook")
    _picture(page, sidebar.locator(".jp-Containers-containers"), "sidebar-grouped")
    # and by environment, both are in the environment's group
    sidebar.locator("select.jp-Containers-groupBy").select_option("environment")
    assert sidebar.locator('[data-group="ui"] .jp-Containers-container').count() == 2
    sidebar.locator("select.jp-Containers-groupBy").select_option("none")


def test_d_notebook_toolbar_shows_its_environments(page, lab):
    # given the notebook whose %%container cell ran in ui (open), and one naming an environment that is not
    item = page.locator(".jp-NotebookPanel:visible .jp-Containers-notebookEnvs")
    item.wait_for()
    # then its toolbar names the environment and its state
    page.wait_for_function(
        "sel => document.querySelector(sel)?.dataset.environments === 'ui'",
        arg=".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Containers-notebookEnvs",
    )
    assert item.get_attribute("data-status") in ("matches", "spec-changed")
    assert item.inner_text().startswith("ui")
    # and a click lists it with what can be done
    item.locator(".jp-ToolbarButtonComponent").click()
    row = page.locator('.jp-Dialog .jp-Containers-notebookEnv[data-environment="ui"]')
    row.wait_for()
    assert row.locator("button.jp-Containers-rebuild").count() == 1
    screenshot(page, "14-notebook-environments")
    _picture(page, page.locator(".jp-Dialog-content"), "notebook-environments")
    page.locator(".jp-Dialog .jp-mod-accept").click()
    # given a notebook whose %%container cell names an environment the workspace lacks
    page.evaluate("() => { jupyterapp.commands.execute('docmanager:open', { path: 'other.ipynb' }); }")
    other = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Containers-notebookEnvs[data-status='missing']")
    other.wait_for()
    assert "nowhere (missing)" in other.inner_text()


def test_e_add_package_checks_the_index_edits_the_spec_and_rebuilds(page, sidebar, lab):
    spec = lab.root / "containers.toml"
    env = sidebar.locator('.jp-Containers-environment[data-environment="ui"]')
    env.wait_for()
    # when "Add package…" is given a package the index does not have
    env.locator("button.jp-Containers-addPackage").click()
    form = page.locator(".jp-Dialog .jp-Containers-packageDialog")
    form.wait_for()
    form.locator('input[name="package"]').fill("no-such-package-here")
    page.locator(".jp-Dialog .jp-mod-accept").click()
    # then the form comes back saying so, and the spec is unchanged
    error = page.locator(".jp-Dialog .jp-Containers-packageDialog .jp-Containers-dialogError")
    error.wait_for()
    assert "no package named 'no-such-package-here'" in error.inner_text()
    assert page.locator('.jp-Dialog input[name="package"].jp-mod-invalid').count() == 1
    # and a version it does not have
    page.locator('.jp-Dialog input[name="package"]').fill("six")
    page.locator('.jp-Dialog input[name="version"]').fill("9.9")
    page.locator(".jp-Dialog .jp-mod-accept").click()
    page.locator(".jp-Dialog .jp-Containers-dialogError", has_text="no release matching '==9.9'").wait_for()
    assert "six" in spec.read_text() and "9.9" not in spec.read_text()
    screenshot(page, "15-add-package-refused")
    _picture(page, page.locator(".jp-Dialog-content"), "add-package")
    # when a version it has is given
    page.locator('.jp-Dialog input[name="version"]').fill("1.16.0")
    with page.expect_response(lambda r: "/environments/ui/packages" in r.url and r.status == 202) as answer:
        page.locator(".jp-Dialog .jp-mod-accept").click()
    build_id = answer.value.json()["build"]["id"]
    page.locator(".jp-Dialog").wait_for(state="detached")
    # then the spec has it in place of the old entry, its comments kept, and the environment rebuilds
    text = spec.read_text()
    assert text.startswith(HEAD) and "# nothing listens here" in text
    assert 'pip = ["six==1.16.0"]' in text
    env.locator(f'.jp-Containers-lastBuild[data-build-id="{build_id}"][data-status="built"]').wait_for(
        timeout=BUILD_SECONDS * 1000
    )


def test_f_restart_on_the_new_image(page, sidebar, lab):
    # given the kernel's container, on the image from before the package was added
    kernel = sidebar.locator(".jp-Containers-container", has_text="kernel of kernel.ipynb")
    kernel.locator(".jp-Containers-outdated").wait_for(timeout=30_000)
    old_id = kernel.get_attribute("data-container-id")
    screenshot(page, "16-older-image")
    # when "Restart on the new image" is clicked
    kernel.locator("button.jp-Containers-restart").click()
    # then the kernel runs in a new container, on the current image
    page.wait_for_function(
        """([sel, old]) => [...document.querySelectorAll(sel)].some(
            e => e.textContent.includes('kernel of kernel.ipynb') && e.dataset.containerId !== old
                 && !e.querySelector('.jp-Containers-outdated'))""",
        arg=[f"{SIDEBAR} .jp-Containers-container", old_id],
        timeout=120_000,
    )
    images = {e["name"]: e["image"] for e in _call(lab, "GET", "jupyter-containers/api/environments")["environments"]}
    rows = _call(lab, "GET", "jupyter-containers/api/containers")["containers"]
    restarted = [c for c in rows if c["kernel_id"] and c["id"] != old_id]
    assert restarted and restarted[0]["image"] == images["ui"] and not restarted[0]["outdated"]


def test_g_open_spec_opens_the_editor(page, sidebar, lab):
    sidebar.locator('.jp-Containers-environment[data-environment="ui"] button.jp-Containers-openSpec').click()
    page.locator('.lm-DockPanel-tabBar .lm-TabBar-tab[title*="containers.toml"]').wait_for()
    page.locator(".jp-FileEditor:visible .cm-content", has_text="The Lab experience tests").wait_for()
    page.evaluate("() => { jupyterapp.shell.currentWidget.close(); }")


def test_h_job_output_opens_without_a_kernel(page, sidebar, lab):
    # given a job that completed
    job = _call(lab, "POST", "jupyter-containers/api/jobs", {"notebook": "hello.ipynb", "environment": "ui"})
    job_id = job["id"]
    page.wait_for_selector(f'{SIDEBAR} [data-job-id="{job_id}"][data-status="completed"]', timeout=BUILD_SECONDS * 1000)
    output = _call(lab, "GET", f"jupyter-containers/api/jobs/{job_id}")["output_path"]
    before = {s["path"] for s in _call(lab, "GET", "api/sessions")}
    # when "Open output" is clicked
    sidebar.locator(f'[data-job-id="{job_id}"] button.jp-Containers-open').click()
    page.locator(".jp-NotebookPanel:visible .jp-OutputArea-output", has_text="hello from a job").wait_for()
    # then the notebook shows, and no kernel was started for it
    page.wait_for_timeout(1500)  # what a kernel start would have done by now
    sessions = _call(lab, "GET", "api/sessions")
    assert output not in {s["path"] for s in sessions}, sessions
    assert {s["path"] for s in sessions} == before
    # and a notification offers to start one (or to run the notebook again as a job)
    toast = page.locator(".Toastify__toast", has_text="without a kernel")
    toast.wait_for()
    screenshot(page, "17-output-without-kernel")
    toast.locator("button", has_text="Start a kernel").click()
    deadline = time.monotonic() + 60
    while output not in {s["path"] for s in _call(lab, "GET", "api/sessions")}:
        assert time.monotonic() < deadline, "no kernel started for the output notebook"
        time.sleep(0.5)


def test_i_restore_a_notebooks_environment_from_the_toolbar(page, sidebar, lab):
    from jupyter_containers.share.metadata import with_record

    # given a notebook recording an environment the workspace does not have
    nb = nbformat.v4.new_notebook()
    record = {"environment": "solo", "spec": {"pip": ["six"]}, "lock": None, "image": None, "image_id": None}
    nb.metadata.update(with_record({}, record))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, lab.root / "restore.ipynb")
    page.evaluate("() => { jupyterapp.commands.execute('docmanager:open', { path: 'restore.ipynb' }); }")
    item = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Containers-notebookEnvs[data-status='missing']")
    # (the label is React's, rendered a frame after the item's status: wait for the words themselves)
    item.filter(has_text="solo (missing)").wait_for()
    # when its environment is restored from the toolbar item
    item.locator(".jp-ToolbarButtonComponent").click()
    page.locator('.jp-Dialog .jp-Containers-notebookEnv[data-environment="solo"] button.jp-Containers-restore').click()
    page.locator(".jp-Dialog .jp-Containers-notebookEnv .jp-Containers-hint", has_text="done").wait_for()
    page.locator(".jp-Dialog .jp-mod-accept").click()
    # then the workspace has it (the sidebar lists it), and the item says the notebook's environment matches
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Containers-notebookEnvs[data-status='matches']").wait_for()
    sidebar.locator('.jp-Containers-environment[data-environment="solo"]').wait_for()
    assert "[environments.solo]" in (lab.root / "containers.toml").read_text()
