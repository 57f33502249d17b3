"""Whole-notebook runs in an environment's container (``jupyter-containers execute``, REST jobs).

Papermill-compatible where users already have habits (see :mod:`.parameters` and :mod:`.provenance`). What
papermill cannot do is the point here: the kernel runs in the environment's container under its limits,
the output notebook records which environment, image and lock it ran with, and it is rewritten
(atomically) after every cell, so a run that fails, times out or is killed still leaves its partial output.

Errors before any cell runs raise: :class:`~jupyter_containers.errors.NotFoundError` (no such notebook),
:class:`~jupyter_containers.errors.RequestError` (a bad request: parameter name, output path, unreadable
notebook), and the manager's own errors (unknown environment, bad spec, failed build). Everything after
the kernel is asked to start ends in an :class:`ExecutionResult`.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import NotFoundError, RequestError
from ..images.lock import atomic_write
from ..spec.model import Resources
from .parameters import inject_parameters, parameter_warnings
from .provenance import CANCELLED, COMPLETED, FAILED, TIMED_OUT, RunRecord
from .report import add_error_markers, hide_code, remove_error_markers

if TYPE_CHECKING:
    from ..images.builder import EventCallback
    from ..manager import ContainersManager

__all__ = [
    "CANCELLED",
    "COMPLETED",
    "FAILED",
    "TIMED_OUT",
    "ExecuteRequest",
    "ExecutionResult",
    "check_notebook_file",
    "check_notebook_language",
    "default_output_path",
    "execute_notebook",
    "execute_notebook_async",
    "shown_path",
]

#: Seconds an interrupted cell gets to report its KeyboardInterrupt before the kernel is killed.
INTERRUPT_GRACE = 5.0

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass(frozen=True)
class ExecuteRequest:
    """What to run: one notebook in one environment, with its parameters and limits.

    The same request serves the command line, REST jobs and in-process callers. Paths may be given as
    strings; they are kept as :class:`~pathlib.Path` and resolved when the run starts.

    Attributes:
        notebook: the input notebook (never overwritten).
        environment: the name of an environment of the manager's spec file.
        output_path: where the output notebook goes; None: ``NAME.out.ipynb`` next to the input.
        parameters: papermill-style parameters, injected after the cell tagged ``parameters``.
        resources: overrides of the environment's resources for this run.
        timeout: seconds for the whole run from kernel start (not the image build); None: the effective
            ``resources.timeout``; 0: none.
        cwd: the kernel's working folder (papermill's ``--cwd``), inside the workspace: the kernel starts in the
            matching folder under ``/workspace``; None: the notebook's folder (the workspace itself when the
            notebook is outside it).
        report_mode: hide the code of every code cell in the output notebook (papermill's ``--report-mode``).
        labels: extra labels of the kernel's container (without the ``io.jupyter.containers.`` prefix),
            e.g. the server's job id, so that a restarted server can find the container of a job.
    """

    notebook: Path
    environment: str
    output_path: Path | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    resources: Resources | None = None
    timeout: float | None = None
    cwd: Path | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    report_mode: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "notebook", Path(self.notebook))
        for name in ("output_path", "cwd"):
            value = getattr(self, name)
            object.__setattr__(self, name, Path(value) if value not in (None, "") else None)
        object.__setattr__(self, "parameters", dict(self.parameters or {}))
        object.__setattr__(self, "labels", dict(self.labels or {}))


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


def default_output_path(input_path: str | os.PathLike[str]) -> Path:
    """``analysis.ipynb`` → ``analysis.out.ipynb`` next to it, so the input is never overwritten."""
    path = Path(input_path)
    stem = path.name[: -len(".ipynb")] if path.name.endswith(".ipynb") else path.stem
    return path.with_name(f"{stem}.out.ipynb")


# ---------------------------------------------------------------------- running
def execute_notebook(
    request: ExecuteRequest,
    *,
    manager: ContainersManager,
    log: Callable[[str], None] = print,
    on_build_event: EventCallback | None = None,
    cancel: threading.Event | None = None,
) -> ExecutionResult:
    """Run every cell of ``request.notebook`` in its environment's container and write the output notebook.

    Blocking; callable from any thread, including one whose event loop is already running (Jupyter):
    the run then gets a private loop in a worker thread. See :func:`execute_notebook_async`.

    Args:
        request: what to run.
        manager: the spec file and engine to run it with (``ContainersManager.discover(...)``).
        log: receives one line of progress at a time (start, errors, the final status).
        on_build_event: receives the image build's events (the build is skipped when the image is current).
        cancel: setting it stops the run like a timeout does (interrupt, then kill), status "cancelled".

    Returns:
        How the run ended; the output notebook is written whatever the status.

    Raises:
        NotFoundError: the notebook does not exist.
        RequestError: invalid parameter names, an output path that would overwrite the input or whose
            folder does not exist, or a notebook that cannot be read.
        SpecError, BuildError, BackendError: from the manager (unknown environment, bad spec, failed build).
    """
    run = _Run(request, manager=manager, log=log, on_build_event=on_build_event, cancel=cancel)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run.execute())
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="jupyter-containers-execute") as pool:
        return pool.submit(lambda: asyncio.run(run.execute())).result()


async def execute_notebook_async(
    request: ExecuteRequest,
    *,
    manager: ContainersManager,
    log: Callable[[str], None] = print,
    on_build_event: EventCallback | None = None,
    cancel: threading.Event | None = None,
) -> ExecutionResult:
    """The asyncio form of :func:`execute_notebook` (same arguments, result and errors).

    Cancelling the awaiting task stops the kernel and keeps the output notebook written so far.
    """
    run = _Run(request, manager=manager, log=log, on_build_event=on_build_event, cancel=cancel)
    return await run.execute()


class _StopRun(Exception):
    pass  # raised from an nbclient hook so that no further cell starts once the run is being stopped


#: Seconds between two writes of the output notebook while a cell is producing output.
OUTPUT_WRITE_INTERVAL = 0.5


def _client_class(base: type) -> type:
    """nbclient's NotebookClient, telling ``on_output`` after each output it adds (nbclient has hooks per cell
    only)."""

    class StreamingClient(base):
        def __init__(self, *args: Any, on_output: Callable[[], None], **kwargs: Any):
            super().__init__(*args, **kwargs)
            self._on_output = on_output

        def output(self, outs: Any, msg: Any, display_id: Any, cell_index: int) -> Any:
            out = super().output(outs, msg, display_id, cell_index)
            self._on_output()
            return out

    return StreamingClient


class _Run:
    def __init__(
        self,
        request: ExecuteRequest,
        *,
        manager: ContainersManager,
        log: Callable[[str], None],
        on_build_event: EventCallback | None,
        cancel: threading.Event | None,
    ):
        self.input_path = request.notebook.resolve()
        self.output_path = (
            request.output_path.resolve() if request.output_path else default_output_path(self.input_path)
        )
        self.environment = request.environment
        self.parameters = dict(request.parameters)
        self.override = request.resources
        self.timeout = request.timeout
        self.cwd_given = request.cwd is not None
        self.cwd = request.cwd.resolve() if request.cwd else self.input_path.parent
        self.report_mode = bool(request.report_mode)
        self.labels = dict(request.labels)
        self._written_at = 0.0
        self._write_pending = False
        self.manager = manager
        self.log = log
        self.on_build_event = on_build_event
        self.cancel = cancel
        self.stop_reason: str | None = None
        self.current_cell: int | None = None
        self.container_kernel: Any = None
        self.nb: Any = None
        self.record: Any = None  # a RunRecord once the build is done

    # ------------------------------------------------------------------ preparation (errors raise)
    def _prepare(self) -> None:
        import nbformat

        if not self.input_path.is_file():
            raise NotFoundError(f"notebook {self.input_path} does not exist")
        if not self.output_path.parent.is_dir():
            raise RequestError(
                f"the output notebook's folder {self.output_path.parent} does not exist; create it or choose another -o"
            )
        if self.output_path == self.input_path:
            raise RequestError(f"the output notebook would overwrite the input {self.input_path}; choose another -o")
        try:
            self.nb = nbformat.read(self.input_path, as_version=4)
        except Exception as exc:  # noqa: BLE001 - JSON or schema errors, reported with the file's name
            raise RequestError(f"{self.input_path} is not a readable notebook: {exc}") from None
        self.env = self.manager.environment(self.environment)
        check_notebook_language(self.nb, notebook=self.input_path, environment=self.environment)
        self._check_cwd()
        remove_error_markers(self.nb)  # a re-run of an output notebook: its old markers would mislead
        for warning in parameter_warnings(self.nb, self.parameters):
            self.log(f"warning: {warning}")
        if self.parameters:
            inject_parameters(self.nb, self.parameters)
        if self.report_mode:
            hide_code(self.nb)
        self.resources = self.manager.resources(self.environment, self.override)
        if self.timeout is None:
            self.timeout = self.resources.timeout

    def _check_cwd(self) -> None:
        """The kernel runs in the container, which sees the workspace only (at ``/workspace``)."""
        if not self.cwd.is_dir():
            raise RequestError(f"the working folder {self.cwd} does not exist; create it or choose another --cwd")
        workspace = self.manager.workspace_dir()
        if self.cwd == workspace or workspace in self.cwd.parents:
            return
        if self.cwd_given:
            raise RequestError(
                f"--cwd {self.cwd} is outside the workspace {workspace}, the only folder the container sees "
                "(at /workspace); choose a folder inside it"
            )
        self.log(
            f"warning: {shown_path(self.input_path)} is outside the workspace {workspace}: the kernel starts in "
            "/workspace (the workspace), so paths relative to the notebook will not resolve"
        )

    # ------------------------------------------------------------------ the run
    async def execute(self) -> ExecutionResult:
        await asyncio.to_thread(self._prepare)
        build = await asyncio.to_thread(self.manager.build, self.environment, on_event=self.on_build_event)
        clock = time.monotonic()
        self.record = RunRecord.start(
            self.nb,
            environment=self.environment,
            spec=self.env.to_dict(),
            spec_file=self.manager.spec_file(),
            lock=build.lock.to_toml() if build.lock is not None else None,
            image=build.image,
            image_id=build.image_id,
            resources=self.resources.to_dict(),
            parameters=self.parameters,
            input_path=self.input_path,
            output_path=self.output_path,
        )
        self._write()
        limits = self.resources.describe()
        self.log(
            f"executing {shown_path(self.input_path)} in {self.environment} ({build.image}, {limits}) "
            f"-> {shown_path(self.output_path)}"
        )

        import zmq.asyncio
        from nbclient import NotebookClient

        from ..kernel.kernelspec import AsyncContainerKernelManager
        from ..kernel.session import fast_reconnect_context

        context = fast_reconnect_context(zmq.asyncio.Context)
        try:
            km = AsyncContainerKernelManager(
                environment=self.environment,
                spec_file=self.manager.spec_file(),
                resources=self.override,
                config=self.manager.config,
                extra_labels=self.labels,
                target=self.manager.target,
                context=context,
            )
            # The image was checked (or built) just above with this manager: the provisioner uses that result
            # for the first start instead of discovering the spec file and checking the image a second time.
            km.prepared = (self.manager, build)
            client = _client_class(NotebookClient)(
                self.nb,
                on_output=self._on_output,
                km=km,
                kernel_name=km.kernel_name,
                timeout=None,
                resources={"metadata": {"path": str(self.cwd)}},
                on_notebook_start=self._on_start,
                on_cell_execute=self._on_cell_execute,
                on_cell_executed=self._on_cell_executed,
            )
        except BaseException as exc:
            context.destroy(linger=0)  # nothing uses it yet; from here on the finally below destroys it
            # The record says "running" in the output notebook already: say how the run ended instead.
            status = CANCELLED if isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)) else FAILED
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self._finish(status, {"message": f"the kernel could not be set up: {reason}"}, time.monotonic() - clock)
            raise
        self.km = km
        task = asyncio.ensure_future(client.async_execute(cwd=str(self.cwd)))
        watchdog = asyncio.ensure_future(self._watch(task, clock))
        status, error = COMPLETED, None
        try:
            try:
                await asyncio.shield(task)
            except BaseException as exc:
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
            context.destroy(linger=0)
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
            image=self.record.image,
            image_id=self.record.image_id,
            parameters=self.parameters,
        )
        self._report(result)
        return result

    async def _classify(self, exc: BaseException) -> tuple[str, dict[str, Any] | None]:
        from nbclient.exceptions import CellExecutionError, DeadKernelError

        if self.stop_reason is not None:
            error: dict[str, Any] = {"message": self._stop_message()}
            if self.current_cell is not None:
                error["cell_index"] = self.current_cell
            return self.stop_reason, error
        if isinstance(exc, CellExecutionError):
            error = self._cell_error(exc)
            status, kept = exit_is_success(FAILED, error)
            if status == COMPLETED:
                where, code = error["cell_index"], error["evalue"]
                self.log(f"cell {where} called sys.exit({code}): the run ends there, completed")
            return status, kept
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
        return cell_error(self.nb, self.current_cell, exc)

    # ------------------------------------------------------------------ hooks (run on the loop)
    async def _on_start(self, notebook: Any) -> None:
        provisioner = getattr(self.km, "provisioner", None)
        self.container_kernel = getattr(provisioner, "kernel", None)
        if self.container_kernel is not None and self.container_kernel.image:
            self.record.set_image(self.container_kernel.image, self.container_kernel.image_id)
        if threading.current_thread() is threading.main_thread():
            # nbclient's own SIGINT handler would tear the kernel down under the running cell; ours
            # stops the run the way a timeout does, so the partial output is kept.
            # SIGTERM and SIGHUP too (a scheduler's timeout, a closed terminal): stop the same way, output kept.
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                try:
                    asyncio.get_running_loop().add_signal_handler(signum, self._request_stop, CANCELLED)
                except (RuntimeError, NotImplementedError):
                    pass

    def _on_cell_execute(self, cell: Any, cell_index: int) -> None:
        if self.stop_reason is not None:
            raise _StopRun()
        self.current_cell = cell_index
        # Written with the next output (or within OUTPUT_WRITE_INTERVAL): a restarted server re-attaching to
        # the kernel reads it to know which cell was running.
        self.record.set_cell(cell_index)
        self._on_output()

    def _on_cell_executed(self, cell: Any, cell_index: int, execute_reply: Any) -> None:
        self._write()

    def _on_output(self) -> None:
        # Outputs are written as they arrive, at most every OUTPUT_WRITE_INTERVAL: a server or a process
        # killed in the middle of a long cell leaves what that cell printed so far. An output that comes
        # sooner is written by a write scheduled for the end of the interval (never dropped).
        wait = self._written_at + OUTPUT_WRITE_INTERVAL - time.monotonic()
        if wait <= 0:
            self._write()
        elif not self._write_pending:
            self._write_pending = True
            asyncio.get_running_loop().call_later(wait, self._pending_write)

    def _pending_write(self) -> None:
        self._write_pending = False
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
        self.record.finish(status, seconds=seconds, error=error)
        if status != COMPLETED and error is not None:
            # As papermill does: a colleague opening the output sees at the top where, and why, it stopped.
            summary = f"{error['ename']}: {error['evalue']}" if error.get("ename") else error["message"]
            add_error_markers(self.nb, error.get("cell_index"), summary)
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
        self._written_at = time.monotonic()
        # Atomic (temporary file + rename): readers, and a run killed mid-write, never see half a file.
        from nbformat.v4.nbjson import writes

        atomic_write(self.output_path, writes(self.nb) + "\n")


#: (ename, evalue) of a cell error that ends a run successfully: sys.exit(), sys.exit(0), raise SystemExit.
EXIT_SUCCESS = (("SystemExit", ""), ("SystemExit", "0"))


def exit_is_success(status: str, error: dict[str, Any] | None) -> tuple[str, dict[str, Any] | None]:
    """As papermill: a cell that called sys.exit() or sys.exit(0) ends the run there, completed."""
    if status == FAILED and error is not None and (error.get("ename"), error.get("evalue")) in EXIT_SUCCESS:
        return COMPLETED, None
    return status, error


def cell_error(nb: Any, index: int | None, exc: Any) -> dict[str, Any]:
    """The run's error for a cell that raised: from the cell's error output, else from nbclient's exception."""
    output = None
    if index is not None:
        outputs = nb.cells[index].get("outputs") or []
        output = next((o for o in reversed(outputs) if o.get("output_type") == "error"), None)
    ename = output["ename"] if output else getattr(exc, "ename", "Error")
    evalue = output["evalue"] if output else getattr(exc, "evalue", str(exc))
    traceback = [_ANSI.sub("", line) for line in (output["traceback"] if output else [str(exc)])]
    count = nb.cells[index].get("execution_count") if index is not None else None
    shown = f"cell {index} (In [{count}])" if count else f"cell {index}"
    return {
        "message": f"{shown} raised {ename}: {evalue}",
        "ename": ename,
        "evalue": evalue,
        "traceback": traceback,
        "cell_index": index,
    }


#: The language of the container kernel (ipykernel, see kernel/kernelspec.py).
KERNEL_LANGUAGE = "python"


def notebook_language(nb: Any) -> str | None:
    """The notebook's language as papermill finds it: ``metadata.kernelspec.language``, else
    ``metadata.language_info.name``; None when neither says."""
    metadata = nb.get("metadata") or {}
    for table, key in (("kernelspec", "language"), ("language_info", "name")):
        value = (metadata.get(table) or {}).get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def check_notebook_language(nb: Any, *, notebook: Path | str, environment: str) -> None:
    """Refuse a notebook written for another language than the environment's kernel: its cells would run
    in a Python kernel and its parameters would be written as Python.

    Raises:
        RequestError: naming the notebook, its language and what to do.
    """
    language = notebook_language(nb)
    if language is None or language.lower().startswith(KERNEL_LANGUAGE):
        return
    field = "kernelspec.language" if (nb.metadata.get("kernelspec") or {}).get("language") else "language_info.name"
    raise RequestError(
        f"{notebook} is written in {language} (metadata.{field} = {language!r}), but environment "
        f"{environment!r} provides a {KERNEL_LANGUAGE.capitalize()} kernel (ipykernel) only: its cells would fail "
        f"and its parameters would be written in Python. Run it with a {language} kernel outside jupyter-containers, "
        "or, if its code is Python, set the notebook's kernel to Python"
    )


def check_notebook_file(path: Path, *, notebook: str, environment: str) -> None:
    """Before a job is accepted: ``path`` is a readable notebook whose language the environment's kernel runs.

    Raises:
        RequestError: naming ``notebook`` (the path as the caller gave it).
    """
    import nbformat

    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # noqa: BLE001 - JSON or schema errors, reported with the file's name
        raise RequestError(f"notebook: {notebook} is not a readable notebook: {exc}") from None
    check_notebook_language(nb, notebook=notebook, environment=environment)


def shown_path(path: Path) -> str:
    """A path as the user would type it: relative to the current folder when inside it."""
    cwd = Path.cwd()
    if cwd != Path(cwd.anchor) and cwd in path.parents:
        return str(path.relative_to(cwd))
    return str(path)
