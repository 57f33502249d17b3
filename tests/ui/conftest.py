"""A real ``jupyter lab`` (subprocess, token auth) in a throwaway workspace, driven by headless Chromium.

The workspace holds a small environment (its nonce makes the first build of a session a real build) and a
notebook with a ``parameters`` cell. Test images go to ``jupyter-containers-test/{env}``, which the
session's cleanup in ``tests/conftest.py`` removes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from ..workspace import make_workspace

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "ui"
SIDEBAR = "#jupyter-containers-sidebar"
NONCE = uuid.uuid4().hex[:12]

SPEC = f"""
[environments.ui]
description = "a small environment for the browser tests"
pip = ["six"]
env = {{ UI_TEST_NONCE = "{NONCE}" }}
# A step of its own that lasts: the install layers are shared with every environment of six on this base (a
# cache hit for any earlier test's build), and the sidebar test must see a build's live log while it runs.
post_build = ["echo 'ui test build {NONCE}' && sleep 3"]

[environments.ui.resources]
cpus = 1
memory = "256m"

[environments.train]
description = "PyTorch training on one GPU"
pip = ["torch"]

[environments.train.resources]
cpus = 2
memory = "8g"
gpus = 1
"""

CONFIG = """
c.Builder.image_repository = 'jupyter-containers-test/{env}'
"""


@pytest.fixture(autouse=True)
def jp_asyncio_loop():
    """No in-process server here: pytest-jupyter's loop fixture would close Playwright's running loop."""
    yield None


@pytest.fixture(autouse=True)
def jp_server_cleanup():
    """No in-process server to clean up (the lab runs as a subprocess)."""
    yield


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    process: subprocess.Popen

    def page_url(self, path: str = "lab") -> str:
        return f"{self.url}{path}?token={self.token}"

    def api(self, path: str) -> dict:
        request = urllib.request.Request(
            f"{self.url}jupyter-containers/api/{path}", headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _notebook(path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell('greeting = "hello"'),
        nbformat.v4.new_code_cell("import os\nprint(greeting * 2, 'from', os.environ.get('UI_TEST_NONCE'))"),
    ]
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture(scope="session")
def ui_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ui-workspace")
    make_workspace(root, SPEC, config=CONFIG)
    _notebook(root / "hello.ipynb")
    return root


def own_workspace(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A workspace like the session's with a nonce of its own, for a module that builds ``ui`` outside the
    sidebar (a module fixture ``ui_workspace`` returning it): else test_sidebar's first build, which must show
    a live log, would find the session's ``ui`` already built and do nothing."""
    root = tmp_path_factory.mktemp(name)
    make_workspace(root, SPEC.replace(NONCE, uuid.uuid4().hex[:12]), config=CONFIG)
    _notebook(root / "hello.ipynb")
    return root


@contextmanager
def running_lab(root: Path, state: Path, *args: str, name: str = "lab") -> Iterator[Lab]:
    """``jupyter lab`` on 127.0.0.1 with a random port and token, in ``root``; stopped by its PID."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"the browser tests need {CHROMIUM}: run 'bash scripts/setup.sh' (installs Debian's chromium)")
    settings = state / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # No news or update toasts over the screenshots.
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port, token = _free_port(), uuid.uuid4().hex
    bin_dir = Path(sys.executable).parent
    command = [
        str(bin_dir / "jupyter"),
        "lab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--config={root / 'jupyter_containers_config.py'}",
        f"--LabApp.user_settings_dir={state / 'settings'}",
        f"--LabApp.workspaces_dir={state / 'workspaces'}",
        f"--JobManager.db={state / 'jobs.sqlite'}",
        "--ContainersService.install_kernelspecs=False",
        *args,
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")
    env = {
        **os.environ,
        "JUPYTER_RUNTIME_DIR": str(state / "runtime"),
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
    }
    log_path = ARTIFACTS / f"{name}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=root, stdout=log, stderr=subprocess.STDOUT, env=env)
        server = Lab(url=f"http://127.0.0.1:{port}/", token=token, root=root, process=process)
        try:
            deadline = time.monotonic() + 90
            while True:
                if process.poll() is not None:
                    pytest.fail(f"jupyter lab exited with {process.returncode}; see {log_path}")
                try:
                    server.api("engine")
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        pytest.fail(f"jupyter lab did not answer within 90 s; see {log_path}")
                    time.sleep(0.25)
            yield server
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture(scope="module")
def lab(ui_workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The lab the tests of a module share, on the real engine."""
    with running_lab(ui_workspace, tmp_path_factory.mktemp("ui-lab-state")) as server:
        yield server


def open_lab(browser, lab: Lab):
    """A new tab with JupyterLab loaded (splash gone)."""
    page = browser.new_page()
    page.set_default_timeout(30_000)
    page.goto(lab.page_url())
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=60_000)
    return page


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    """Chromium with a fresh profile, for one module: Playwright's sync API keeps its event loop
    current while it runs, which other tests' loop fixtures (pytest-jupyter) must not inherit."""
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
            viewport={"width": 1400, "height": 900},
            device_scale_factor=2,
        )
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def page(lab: Lab, browser):
    """JupyterLab, shared by the tests of a module in order."""
    return open_lab(browser, lab)


def open_left(page, widget_id: str):
    """Show a widget of the left sidebar (clicking its tab, unless it is already shown)."""
    panel = page.locator(f"#{widget_id}")
    if not panel.is_visible():
        page.locator(f'.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="{widget_id}"]').click()
    panel.wait_for(state="visible")
    _widen_left(page, 330)
    return panel


def _widen_left(page, width: int) -> None:
    """Drag the left sidebar's edge so that it is at least ``width`` pixels wide."""
    stack = page.locator("#jp-left-stack")
    box = stack.bounding_box()
    if box is None or box["width"] >= width:
        return
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first.bounding_box()
    if handle is None:
        return
    x, y = handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + width - box["width"], y, steps=5)
    page.mouse.up()


@pytest.fixture
def sidebar(page):
    """The Containers sidebar, opened."""
    return open_left(page, SIDEBAR[1:])


@pytest.fixture
def lab_without_engine(ui_workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A lab whose engine address answers nothing."""
    missing = tmp_path_factory.mktemp("no-engine") / "docker.sock"
    with running_lab(
        ui_workspace,
        tmp_path_factory.mktemp("ui-lab-state"),
        f"--DockerBackend.base_url=unix://{missing}",
        name="lab-without-engine",
    ) as server:
        yield server


def screenshot(page, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path
