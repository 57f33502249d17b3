"""ipywidgets for notebooks: pick an environment and its resources, build it with a progress bar and its
log, and watch the running containers (``%container ui``, or ``ContainersUI()`` directly).

Builds run in a worker thread so the kernel stays responsive; widget state changes from that thread are
sent as comm messages, which ipykernel allows from any thread.
"""

from __future__ import annotations

import html
import threading
from typing import Any

import ipywidgets as w

from .errors import ContainersError
from .frontend import format_gpu_usage
from .units import format_size


class ContainersUI(w.VBox):
    """Environment picker, resource controls, Build button with progress and log, containers table."""

    def __init__(self, manager: Any = None, *, refresh_seconds: float = 2.0, **kwargs: Any):
        if manager is None:
            from .manager import ContainersManager

            manager = ContainersManager.discover()
        self.manager = manager
        names = list(manager.spec().environments)
        self.environment = w.Dropdown(options=names, value=names[0] if names else None, description="Environment")
        self.cpus = w.BoundedFloatText(value=0, min=0, max=512, step=0.5, description="CPUs")
        self.memory = w.Text(value="", placeholder="e.g. 4g", description="Memory")
        self.gpus = w.Text(value="", placeholder="count, all, or 0,2", description="GPUs")
        self.timeout = w.Text(value="", placeholder="e.g. 30m", description="Timeout")
        self.build_button = w.Button(description="Build", icon="cube", button_style="primary")
        self.status = w.HTML()
        self.progress = w.IntProgress(value=0, min=0, max=1, description="Steps", layout=w.Layout(visibility="hidden"))
        self.build_log = w.Textarea(value="", rows=8, disabled=True, layout=w.Layout(width="100%"))
        self.containers = w.HTML()
        self.engine = w.HTML()
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.build_button.on_click(lambda _: self.build())
        self.refresh_button.on_click(lambda _: self.refresh())
        self.environment.observe(lambda _: self._show_environment(), names="value")
        self._building: threading.Thread | None = None
        self._stop = threading.Event()
        super().__init__(
            [
                w.HBox([self.environment, self.build_button, self.status]),
                w.HBox([self.cpus, self.memory]),
                w.HBox([self.gpus, self.timeout]),
                self.engine,
                self.progress,
                self.build_log,
                w.HBox([w.HTML("<b>Running containers</b>"), self.refresh_button]),
                self.containers,
            ],
            **kwargs,
        )
        self._show_environment()
        self._show_engine()
        self.refresh()
        if refresh_seconds:
            threading.Thread(target=self._auto_refresh, args=(refresh_seconds,), daemon=True).start()

    # ------------------------------------------------------------------ environment and resources
    def resources(self) -> Any:
        """The resource overrides the controls describe (validated like CLI flags)."""
        from .spec.parse import parse_resources

        raw: dict[str, Any] = {}
        if self.cpus.value:
            raw["cpus"] = self.cpus.value
        for name, control in (("memory", self.memory), ("gpus", self.gpus), ("timeout", self.timeout)):
            if control.value.strip():
                raw[name] = control.value.strip()
        return parse_resources(raw, key="resources")

    def _show_environment(self) -> None:
        if not self.environment.value:
            self.status.value = "<i>no environments in the spec file</i>"
            return
        env = self.manager.environment(self.environment.value)
        r = env.resources
        self.cpus.value = r.cpus or 0
        self.memory.value = format_size(r.memory).replace(" ", "") if r.memory else ""
        self.gpus.value = ",".join(r.gpus) if isinstance(r.gpus, tuple) else ("" if r.gpus is None else str(r.gpus))
        self.timeout.value = f"{r.timeout:g}s" if r.timeout else ""
        try:
            state = self.manager.builder.status(env)["status"]
        except ContainersError as exc:
            state = f"unknown ({exc})"
        self.status.value = f"<span class='jp-Containers-status'>{html.escape(state)}</span>"

    def _show_engine(self) -> None:
        """Whether --gpus works on the engine, worded as the CLI's ``engine`` and the sidebar word it."""
        try:
            info = self.manager.engine()
        except ContainersError as exc:
            self.engine.value = f"<i>{html.escape(str(exc))}</i>"
            return
        self.engine.value = f"<span class='jp-Containers-engine'>GPUs: {html.escape(info.gpu_summary)}</span>"

    # ------------------------------------------------------------------ build
    def build(self, wait: bool = False) -> None:
        """Build the selected environment in a thread (``wait`` blocks until done: tests, scripts)."""
        if self._building and self._building.is_alive():
            return
        self.build_button.disabled = True
        self.build_log.value = ""
        self.progress.value, self.progress.max = 0, 1
        self.progress.layout.visibility = "visible"
        self.status.value = "building…"
        self._building = threading.Thread(target=self._build, args=(self.environment.value,), daemon=True)
        self._building.start()
        if wait:
            self._building.join()

    def _build(self, name: str) -> None:
        lines: list[str] = []

        def on_event(event: Any) -> None:
            if event.total:
                self.progress.max = event.total
            if event.kind == "done":
                self.progress.value = min(self.progress.value + 1, self.progress.max)
            text = event.title if event.kind == "step" else event.text
            if event.kind in ("step", "log", "info") and text.strip():
                lines.append(text)
                self.build_log.value = "\n".join(lines[-200:])

        try:
            result = self.manager.build(name, on_event=on_event)
            self.progress.value = self.progress.max
            state = "built" if result.built else "up to date"
            self.status.value = f"<span class='jp-Containers-status'>{state}</span>: <code>{result.image}</code>"
        except ContainersError as exc:
            self.status.value = "<span class='jp-Containers-status'>failed</span>"
            lines.append(str(exc))
            self.build_log.value = "\n".join(lines[-200:])
        finally:
            self.build_button.disabled = False

    # ------------------------------------------------------------------ containers
    def refresh(self) -> None:
        try:
            containers = self.manager.containers(usage=True)
        except ContainersError as exc:
            self.containers.value = f"<i>{html.escape(str(exc))}</i>"
            return
        if not containers:
            self.containers.value = "<i>none running</i>"
            return
        rows = [
            "<tr><th>environment</th><th>role</th><th>container</th><th>CPU</th><th>memory</th><th>GPU</th><th>status</th></tr>"
        ]
        for c in containers:
            usage = c["usage"] or {}
            cpu = f"{usage['cpu_percent']:.0f}%" if usage.get("cpu_percent") is not None else "…"
            used, limit = usage.get("memory_used"), usage.get("memory_limit")
            memory = format_size(used) if used else "…"
            if limit:
                memory += f" / {format_size(limit)}"
            gpu = format_gpu_usage(usage.get("gpus") or [])
            cells = (c["environment"] or "", c["role"] or "", c["name"], cpu, memory, gpu, c["status"])
            rows.append("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in cells) + "</tr>")
        self.containers.value = "<table class='jp-Containers-table'>" + "".join(rows) + "</table>"

    def _auto_refresh(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - a refresh must never kill the thread
                continue

    def close(self) -> None:
        self._stop.set()
        super().close()
