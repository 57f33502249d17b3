"""Whole-notebook runs in an environment's container (``jupyter-containers execute``, later REST jobs).

Papermill-compatible where users already have habits: a cell tagged ``parameters`` is followed by an
``injected-parameters`` cell, and ``metadata.papermill.parameters`` is filled in. What papermill cannot do
is the point here: the kernel runs in the environment's container under its limits, the output notebook
records which environment, image and lock it ran with, and it is rewritten (atomically) after every cell,
so a run that fails, times out or is killed still leaves its partial output behind.

Errors before any cell runs (unknown environment, bad spec, failed build, unreadable notebook) raise a
``ContainersError``; everything after the kernel is asked to start ends in an :class:`ExecutionResult`.
"""

from __future__ import annotations

import asyncio
import atexit
import keyword
import math
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import ContainersError
from ..spec.model import Resources

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"

COMPLETED = "completed"
FAILED = "failed"
TIMED_OUT = "timed out"
CANCELLED = "cancelled"

#: Seconds an interrupted cell gets to report its KeyboardInterrupt before the kernel is killed.
INTERRUPT_GRACE = 5.0

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass
class ExecutionResult:
    """How a run ended; ``error`` holds ``message`` and, for a cell error, ``ename``/``evalue``/``traceback``."""

    status: str
    output_path: Path
    environment: str
    seconds: float
    cells_executed: int
    error: dict[str, Any] | None = None
    image: str | None = None
    image_id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == COMPLETED

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "output_path": str(self.output_path),
            "environment": self.environment,
            "seconds": round(self.seconds, 3),
            "cells_executed": self.cells_executed,
            "error": self.error,
            "image": self.image,
            "image_id": self.image_id,
            "parameters": self.parameters,
        }


# ---------------------------------------------------------------------- parameters
def parse_parameter_value(text: str) -> Any:
    """A ``-p NAME VALUE`` value typed as papermill types it: True/False/None, int, float, else the string."""
    if text == "True":
        return True
    if text == "False":
        return False
    if text == "None":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def parse_parameters(typed: Iterable[tuple[str, str]] = (), raw: Iterable[tuple[str, str]] = ()) -> dict[str, Any]:
    """``-p`` pairs (typed like papermill) and ``-r`` pairs (kept as strings), in the order given."""
    out: dict[str, Any] = {}
    for name, value in typed:
        out[name] = parse_parameter_value(value)
    for name, value in raw:
        out[name] = value
    return out


def _python_literal(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    return repr(value)


def inject_parameters(nb: Any, parameters: Mapping[str, Any]) -> int:
    """Insert (or replace) the ``injected-parameters`` cell as papermill does; returns its index.

    Placement: replacing an existing injected cell (a re-run of an output notebook), else right after the
    first cell tagged ``parameters``, else at the top.
    """
    from nbformat.v4 import new_code_cell

    for name in parameters:
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise ContainersError(f"parameter name {name!r} is not a Python variable name; use e.g. 'size'")
    source = "\n".join(["# Parameters", *(f"{name} = {_python_literal(v)}" for name, v in parameters.items())])
    cell = new_code_cell(source, metadata={"tags": [INJECTED_TAG]})
    if (nb.get("nbformat_minor") or 0) < 5:
        cell.pop("id", None)  # cell ids exist from nbformat 4.5 on
    injected = _tagged(nb, INJECTED_TAG)
    if injected is not None:
        nb.cells[injected] = cell
        return injected
    marker = _tagged(nb, PARAMETERS_TAG)
    index = 0 if marker is None else marker + 1
    nb.cells.insert(index, cell)
    return index


def _tagged(nb: Any, tag: str) -> int | None:
    for index, cell in enumerate(nb.cells):
        if tag in (cell.get("metadata", {}).get("tags") or []):
            return index
    return None


def default_output_path(input_path: str | Path) -> Path:
    """``analysis.ipynb`` → ``analysis.out.ipynb`` next to it, so the input is never overwritten."""
    path = Path(input_path)
    stem = path.name[: -len(".ipynb")] if path.name.endswith(".ipynb") else path.stem
    return path.with_name(f"{stem}.out.ipynb")


# ---------------------------------------------------------------------- running
def execute_notebook(
    input_path: str | Path,
    *,
    environment: str,
    output_path: str | Path | None = None,
    parameters: Mapping[str, Any] | None = None,
    resources: Resources | None = None,
    spec_file: str | Path | None = None,
    manager: Any = None,
    timeout: float | None = None,
    cwd: str | Path | None = None,
    log: Callable[[str], None] = print,
    on_build_event: Callable[[Any], None] | None = None,
    cancel: threading.Event | None = None,
) -> ExecutionResult:
    """Run every cell of ``input_path`` in ``environment``'s container and write the output notebook.

    Blocking; callable from any thread, including one whose event loop is already running (Jupyter):
    the run then gets a private loop in a worker thread. See :func:`execute_notebook_async`.
    """
    kwargs = dict(
        environment=environment,
        output_path=output_path,
        parameters=parameters,
        resources=resources,
        spec_file=spec_file,
        manager=manager,
        timeout=timeout,
        cwd=cwd,
        log=log,
        on_build_event=on_build_event,
        cancel=cancel,
    )
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(execute_notebook_async(input_path, **kwargs))
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="jupyter-containers-execute") as pool:
        return pool.submit(lambda: asyncio.run(execute_notebook_async(input_path, **kwargs))).result()


async def execute_notebook_async(
    input_path: str | Path,
    *,
    environment: str,
    output_path: str | Path | None = None,
    parameters: Mapping[str, Any] | None = None,
    resources: Resources | None = None,
    spec_file: str | Path | None = None,
    manager: Any = None,
    timeout: float | None = None,
    cwd: str | Path | None = None,
    log: Callable[[str], None] = print,
    on_build_event: Callable[[Any], None] | None = None,
    cancel: threading.Event | None = None,
) -> ExecutionResult:
    """The asyncio form of :func:`execute_notebook`.

    ``resources`` override the environment's defaults; ``timeout`` (default: the effective
    ``resources.timeout``) bounds the whole run from kernel start, not the image build. Setting
    ``cancel`` stops the run like a timeout does (interrupt, then kill), with status "cancelled".
    """
    run = _Run(
        Path(input_path),
        environment=environment,
        output_path=output_path,
        parameters=dict(parameters or {}),
        resources=resources,
        spec_file=spec_file,
        manager=manager,
        timeout=timeout,
        cwd=cwd,
        log=log,
        on_build_event=on_build_event,
        cancel=cancel,
    )
    return await run.execute()


class _StopRun(Exception):
    pass  # raised from an nbclient hook so that no further cell starts once the run is being stopped


class _Run:
    def __init__(
        self,
        input_path: Path,
        *,
        environment: str,
        output_path: str | Path | None,
        parameters: dict[str, Any],
        resources: Resources | None,
        spec_file: str | Path | None,
        manager: Any,
        timeout: float | None,
        cwd: str | Path | None,
        log: Callable[[str], None],
        on_build_event: Callable[[Any], None] | None,
        cancel: threading.Event | None,
    ):
        self.input_path = input_path.resolve()
        self.output_path = Path(output_path).resolve() if output_path else default_output_path(self.input_path)
        self.environment = environment
        self.parameters = parameters
        self.override = resources
        self.spec_file = spec_file
        self.manager = manager
        self.timeout = timeout
        self.cwd = Path(cwd).resolve() if cwd else self.input_path.parent
        self.log = log
        self.on_build_event = on_build_event
        self.cancel = cancel
        self.stop_reason: str | None = None
        self.current_cell: int | None = None
        self.container_kernel: Any = None
        self.nb: Any = None

    # ------------------------------------------------------------------ preparation (errors raise)
    def _prepare(self) -> None:
        import nbformat

        if not self.input_path.is_file():
            raise ContainersError(f"notebook {self.input_path} does not exist")
        if not self.output_path.parent.is_dir():
            raise ContainersError(f"the output notebook's folder {self.output_path.parent} does not exist")
        if self.output_path == self.input_path:
            raise ContainersError(f"the output notebook would overwrite the input {self.input_path}; choose another -o")
        try:
            self.nb = nbformat.read(self.input_path, as_version=4)
        except Exception as exc:  # noqa: BLE001 - JSON or schema errors, reported with the file's name
            raise ContainersError(f"{self.input_path} is not a readable notebook: {exc}") from None
        if self.parameters:
            inject_parameters(self.nb, self.parameters)
        if self.manager is None:
            self.manager = _manager_for(self.input_path, self.spec_file)
        self.env = self.manager.environment(self.environment)
        self.resources = self.manager.resources(self.environment, self.override)
        if self.timeout is None:
            self.timeout = self.resources.timeout

    # ------------------------------------------------------------------ the run
    async def execute(self) -> ExecutionResult:
        await asyncio.to_thread(self._prepare)
        build = await asyncio.to_thread(self.manager.build, self.environment, on_event=self.on_build_event)
        self.started = datetime.now(timezone.utc)
        clock = time.monotonic()
        self.record = {
            "environment": self.environment,
            "spec": self.env.to_dict(),
            "spec_file": str(self.manager.spec_file()),
            "lock": build.lock.to_toml() if build.lock is not None else None,
            "image": build.image,
            "image_id": build.image_id,
            "resources": self.resources.to_dict(),
            "parameters": self.parameters,
            "started": _iso(self.started),
            "finished": None,
            "status": "running",
        }
        self.nb.metadata["jupyter_containers"] = self.record
        self.record = self.nb.metadata["jupyter_containers"]  # the notebook holds a converted copy
        self.nb.metadata["papermill"] = {
            "parameters": self.parameters,
            "input_path": str(self.input_path),
            "output_path": str(self.output_path),
            "environment_variables": {},
            "start_time": _iso(self.started),
            "end_time": None,
            "duration": None,
            "exception": None,
        }
        self._write()
        limits = self.resources.describe()
        self.log(
            f"executing {shown_path(self.input_path)} in {self.environment} ({build.image}, {limits}) "
            f"-> {shown_path(self.output_path)}"
        )

        from nbclient import NotebookClient

        from ..kernel.kernelspec import AsyncContainerKernelManager

        km = AsyncContainerKernelManager(
            environment=self.environment,
            spec_file=self.manager.spec_file(),
            resources=self.override,
            config=self.manager.config,
        )
        client = NotebookClient(
            self.nb,
            km=km,
            kernel_name=km.kernel_name,
            timeout=None,
            resources={"metadata": {"path": str(self.cwd)}},
            on_notebook_start=self._on_start,
            on_cell_execute=self._on_cell_execute,
            on_cell_executed=self._on_cell_executed,
        )
        self.km = km
        task = asyncio.ensure_future(client.async_execute(cwd=str(self.cwd)))
        watchdog = asyncio.ensure_future(self._watch(task, clock))
        status, error = COMPLETED, None
        try:
            try:
                await asyncio.shield(task)
            except BaseException as exc:  # noqa: BLE001 - sorted into a status below
                if isinstance(exc, asyncio.CancelledError) and not task.done():
                    self.stop_reason = CANCELLED  # the caller cancelled us: stop the kernel, keep the output
                    raise
                status, error = await self._classify(exc)
        finally:
            # nbclient leaves this registered when the kernel fails to start; at exit it would fail noisily.
            atexit.unregister(client._cleanup_kernel)
            watchdog.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            await self._shutdown(km, client)
            seconds = time.monotonic() - clock
            if status == COMPLETED and self.stop_reason is not None:
                status, error = self.stop_reason, {"message": self._stop_message()}
            self._finish(status, error, seconds)
        result = ExecutionResult(
            status=status,
            output_path=self.output_path,
            environment=self.environment,
            seconds=seconds,
            cells_executed=client.code_cells_executed,
            error=error,
            image=self.record["image"],
            image_id=self.record["image_id"],
            parameters=self.parameters,
        )
        self._report(result)
        return result

    async def _classify(self, exc: BaseException) -> tuple[str, dict[str, Any] | None]:
        from nbclient.exceptions import CellExecutionError, DeadKernelError

        if self.stop_reason is not None:
            error = {"message": self._stop_message()}
            if self.current_cell is not None:
                error["cell_index"] = self.current_cell
            return self.stop_reason, error
        if isinstance(exc, CellExecutionError):
            return FAILED, self._cell_error(exc)
        if isinstance(exc, DeadKernelError):
            reason = None
            if self.container_kernel is not None:
                reason = await asyncio.to_thread(self.container_kernel.death_reason)
            where = f" while running cell {self.current_cell}" if self.current_cell is not None else ""
            message = f"the kernel died{where}: {reason or 'its container stopped'}"
            return FAILED, {"message": message, "cell_index": self.current_cell}
        if isinstance(exc, _StopRun):  # pragma: no cover - only raised once stop_reason is set
            return CANCELLED, {"message": "stopped"}
        return FAILED, {"message": f"the run failed: {exc}" if str(exc) else f"the run failed: {exc!r}"}

    def _cell_error(self, exc: Any) -> dict[str, Any]:
        index = self.current_cell
        output = None
        if index is not None:
            outputs = self.nb.cells[index].get("outputs") or []
            output = next((o for o in reversed(outputs) if o.get("output_type") == "error"), None)
        ename = output["ename"] if output else getattr(exc, "ename", "Error")
        evalue = output["evalue"] if output else getattr(exc, "evalue", str(exc))
        traceback = [_ANSI.sub("", line) for line in (output["traceback"] if output else [str(exc)])]
        count = self.nb.cells[index].get("execution_count") if index is not None else None
        shown = f"cell {index} (In [{count}])" if count else f"cell {index}"
        return {
            "message": f"{shown} raised {ename}: {evalue}",
            "ename": ename,
            "evalue": evalue,
            "traceback": traceback,
            "cell_index": index,
        }

    # ------------------------------------------------------------------ hooks (run on the loop)
    async def _on_start(self, notebook: Any) -> None:
        provisioner = getattr(self.km, "provisioner", None)
        self.container_kernel = getattr(provisioner, "kernel", None)
        if self.container_kernel is not None and self.container_kernel.image:
            self.record["image"] = self.container_kernel.image
            self.record["image_id"] = self.container_kernel.image_id
        if threading.current_thread() is threading.main_thread():
            # nbclient's own SIGINT handler would tear the kernel down under the running cell; ours
            # stops the run the way a timeout does, so the partial output is kept.
            try:
                asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self._request_stop, CANCELLED)
            except (RuntimeError, NotImplementedError):
                pass

    def _on_cell_execute(self, cell: Any, cell_index: int) -> None:
        if self.stop_reason is not None:
            raise _StopRun()
        self.current_cell = cell_index

    def _on_cell_executed(self, cell: Any, cell_index: int, execute_reply: Any) -> None:
        self._write()

    def _request_stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason

    # ------------------------------------------------------------------ timeout and cancel
    async def _watch(self, task: asyncio.Future, clock: float) -> None:
        deadline = clock + self.timeout if self.timeout else None
        while self.stop_reason is None:
            await asyncio.sleep(0.1)
            if deadline is not None and time.monotonic() >= deadline:
                self._request_stop(TIMED_OUT)
            elif self.cancel is not None and self.cancel.is_set():
                self._request_stop(CANCELLED)
        if self.current_cell is None:
            # No cell runs yet: a signal could kill a kernel still starting; the first cell's hook stops the run.
            self.log(f"{self._stop_message()} before the first cell")
        else:
            self.log(f"{self._stop_message()} while running cell {self.current_cell}: interrupting the kernel")
            try:
                if self.km.has_kernel:
                    await self.km.interrupt_kernel()
            except Exception as exc:  # noqa: BLE001 - a kernel already gone
                self.log(f"could not interrupt the kernel: {exc}")
        await asyncio.wait([task], timeout=INTERRUPT_GRACE)
        if not task.done():
            self.log("the kernel did not stop at the interrupt: killing it")
            kernel = self.container_kernel or getattr(getattr(self.km, "provisioner", None), "kernel", None)
            if kernel is not None:
                await asyncio.to_thread(kernel.kill)
            await asyncio.wait([task], timeout=10)
            if not task.done():
                task.cancel()

    def _stop_message(self) -> str:
        from ..units import format_duration

        if self.stop_reason == TIMED_OUT:
            return f"timed out after {format_duration(self.timeout or 0)}"
        return "cancelled"

    # ------------------------------------------------------------------ the end
    async def _shutdown(self, km: Any, client: Any) -> None:
        try:
            if km.has_kernel:
                await km.shutdown_kernel(now=True)
        except Exception as exc:  # noqa: BLE001 - the output notebook matters more than a clean stop
            self.log(f"could not shut the kernel down cleanly: {exc}")
        finally:
            if client.kc is not None:
                client.kc.stop_channels()
                client.kc = None

    def _finish(self, status: str, error: dict[str, Any] | None, seconds: float) -> None:
        finished = datetime.now(timezone.utc)
        self.record.update({"finished": _iso(finished), "status": status, "seconds": round(seconds, 3)})
        if error is not None:
            self.record["error"] = error
        self.nb.metadata["papermill"].update(
            {"end_time": _iso(finished), "duration": round(seconds, 3), "exception": status != COMPLETED}
        )
        self._write()

    def _report(self, result: ExecutionResult) -> None:
        if result.error is not None:
            message = result.error["message"]
            lines = [message if message.startswith(result.status) else f"{result.status}: {message}"]
            if message == result.status:
                lines = []  # "cancelled": the summary line below says it all
            if result.error.get("traceback"):
                lines.append("\n".join(result.error["traceback"]))
            if lines:
                self.log("\n".join(lines))
        self.log(f"{result.status} in {result.seconds:.1f}s ({result.cells_executed} cells executed)")

    def _write(self) -> None:
        # Atomic (temporary file + rename): readers, and a run killed mid-write, never see half a file.
        from nbformat.v4.nbjson import writes

        from ..build.lock import atomic_write

        atomic_write(self.output_path, writes(self.nb) + "\n")


def _manager_for(input_path: Path, spec_file: str | Path | None) -> Any:
    # The spec given, else the one next to the notebook, else the one in the current folder.
    from traitlets.config import Config

    from ..config import load_config
    from ..errors import SpecNotFoundError
    from ..manager import ContainersManager
    from ..spec.parse import find_spec_file

    if spec_file is not None:
        path = Path(spec_file).resolve()
    else:
        try:
            path = find_spec_file(input_path.parent).resolve()
        except SpecNotFoundError:
            try:
                path = find_spec_file().resolve()
            except SpecNotFoundError:
                raise SpecNotFoundError(
                    f"no containers.toml (or pyproject.toml with a [tool.jupyter-containers] table) next to "
                    f"{input_path.name} or in the current folder; pass -f/--file PATH"
                ) from None
    # The caller's config (current folder) first, the project's own file on top, as the provisioner does.
    config = Config()
    config.merge(load_config())
    config.merge(load_config(path.parent))
    return ContainersManager(spec_path=path, config=config)


def shown_path(path: Path) -> str:
    """A path as the user would type it: relative to the current folder when inside it."""
    cwd = Path.cwd()
    if cwd != Path(cwd.anchor) and cwd in path.parents:
        return str(path.relative_to(cwd))
    return str(path)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
