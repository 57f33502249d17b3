"""Re-attaching a restarted server to a job whose kernel outlived the previous server.

A server killed in the middle of a job (a crash, an OOM kill, a redeploy) leaves the job's kernel running in
its container: the kernel's ZMQ sockets are ``ipc`` files in a host folder (see :mod:`..kernel.container`),
and they outlive the process that created them. The next server finds the container by its ``job`` label,
reads the connection file in that folder, and reconnects as a new client:

- the cell that was running keeps its output so far (the runner writes outputs as they arrive) and gets what
  it prints from the moment of reconnection, after a note that says output in between is missing (IOPub is
  a broadcast: nobody kept what was published while no client listened);
- the end of that cell is known by a request queued behind it on the shell channel (a kernel runs shell
  requests one at a time), and whether it raised by ``sys.last_value``, which IPython sets for every error
  it shows (an earlier error would have stopped the run, so it can only be this cell's);
- the remaining cells run through nbclient as in a normal run, and the job ends as a normal run does:
  output notebook finished, container and socket folder removed.

A kernel that does not answer on its control channel within ``ALIVE_TIMEOUT`` is taken for dead: the
caller then stops its container and marks the job interrupted.
"""

from __future__ import annotations

import ast
import asyncio
import json
import shutil
import threading
import time
from pathlib import Path
from queue import Empty
from types import SimpleNamespace
from typing import Any, cast

from ..backends.base import ContainerInfo
from ..images.lock import atomic_write
from .provenance import CANCELLED, COMPLETED, FAILED, TIMED_OUT, RunRecord

#: Seconds a re-found kernel gets to answer a kernel_info request on its control channel.
ALIVE_TIMEOUT = 10.0

#: What the running cell's output says where the output printed while no server listened is missing.
GAP_NOTE = (
    "[jupyter-containers] the server restarted while this cell was running; what the cell printed while no "
    "server was listening is not shown here. The output goes on from the moment the new server re-attached.\n"
)

#: Asks IPython whether the last cell raised: sys.last_value is set for every error IPython shows.
_LAST_ERROR = (
    "(lambda s: (type(s.last_value).__name__, str(s.last_value)) if getattr(s, 'last_value', None) is not None "
    "else None)(__import__('sys'))"
)

_OUTPUT_TYPES = ("stream", "display_data", "execute_result", "error")


def host_connection_info(folder: Path) -> dict[str, Any]:
    """The connection file's info as the host reaches it: the socket files' path on the host."""
    info = json.loads((folder / "kernel.json").read_text())
    info["transport"] = "ipc"
    info["ip"] = str(folder / "k")
    return info


async def _control_answers(kc: Any, timeout: float) -> bool:
    """Whether the kernel answers a kernel_info request on the control channel (answered even while a cell
    runs on the shell channel)."""
    msg = kc.session.msg("kernel_info_request")
    kc.control_channel.send(msg)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            reply = await kc.control_channel.get_msg(timeout=0.5)
        except Empty:
            continue
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            return True
    return False


class Reattached:
    """One job resumed on a kernel that a previous server started.

    ``finish`` (called once it ends, with status and error) records the result in the job store.
    """

    def __init__(
        self,
        *,
        manager: Any,
        container: ContainerInfo,
        folder: Path,
        output_path: Path,
        cwd: Path,
        timeout: float | None,
        started: float | None,
        cancel: threading.Event,
        log: Any,
    ):
        self.manager = manager
        self.container = container
        self.folder = folder
        self.output_path = output_path
        self.cwd = cwd
        self.timeout = timeout
        self.started = started or time.time()
        self.cancel = cancel
        self.log = log
        self.kc: Any = None
        self.nb: Any = None
        self.record: RunRecord | None = None
        self._written_at = 0.0
        self._stop_reason: str | None = None

    # ------------------------------------------------------------------ connect
    async def connect(self) -> bool:
        """Connect to the kernel; False when it does not answer (dead or wedged)."""
        import nbformat
        from jupyter_client.asynchronous import AsyncKernelClient

        self.nb = nbformat.read(self.output_path, as_version=4)
        self.record = RunRecord.read(self.nb)
        if self.record is None:
            return False
        if self.timeout is None:
            self.timeout = (self.record.data.get("resources") or {}).get("timeout")
        kc = AsyncKernelClient()
        kc.load_connection_info(cast(Any, host_connection_info(self.folder)))
        kc.start_channels()
        self.kc = kc
        if not await _control_answers(kc, ALIVE_TIMEOUT):
            kc.stop_channels()
            self.kc = None
            return False
        return True

    # ------------------------------------------------------------------ the run
    async def run(self) -> tuple[str, dict[str, Any] | None]:
        """The rest of the job: the running cell's end, then the remaining cells. Returns (status, error)."""
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError, DeadKernelError

        from .runner import _client_class, cell_error, exit_is_success

        assert self.kc is not None and self.record is not None
        running = self._running_cell()
        self.log(f"re-attached to its kernel in container {self.container.id[:12]}; cell {running} was running")
        status: str = COMPLETED
        error: dict[str, Any] | None = None
        watcher = asyncio.ensure_future(self._watch())
        try:
            if running is not None:
                raised = await self._finish_running_cell(running)
                if raised is not None and not self._stop_reason:
                    ename, evalue = raised
                    error = cell_error(self.nb, running, SimpleNamespace(ename=ename, evalue=evalue))
                    return exit_is_success(FAILED, error)
            client = _client_class(NotebookClient)(
                self.nb,
                on_output=self._write_soon,
                timeout=None,
                resources={"metadata": {"path": str(self.cwd)}},
                on_cell_executed=lambda **_: self._write(),
            )
            client.kc = self.kc
            executed = sum(1 for c in self.nb.cells if c.cell_type == "code" and c.get("execution_count"))
            first = 0 if running is None else running + 1
            for index in range(first, len(self.nb.cells)):
                if self._stop_reason:
                    break
                self._set_cell(index)
                cell = self.nb.cells[index]
                await client.async_execute_cell(cell, index, execution_count=executed + 1)
                if cell.cell_type == "code" and cell.source.strip():
                    executed += 1
        except CellExecutionError as exc:
            status, error = FAILED, cell_error(self.nb, self.record.data.get("cell"), exc)
        except DeadKernelError:
            status, error = FAILED, {"message": f"the kernel died: {self._death_reason()}"}
        finally:
            watcher.cancel()
        if self._stop_reason:
            status = self._stop_reason
            error = {"message": "cancelled" if status == CANCELLED else "timed out", "cell_index": self._cell()}
        return exit_is_success(status, error)

    def _running_cell(self) -> int | None:
        """The cell the previous server was running: the record's ``cell``, else the first code cell after
        the last one that ran (None: no cell was running)."""
        assert self.record is not None
        recorded = self.record.data.get("cell")
        if isinstance(recorded, int) and 0 <= recorded < len(self.nb.cells):
            return recorded
        last = -1
        for index, cell in enumerate(self.nb.cells):
            if cell.cell_type == "code" and cell.get("execution_count"):
                last = index
        return last if last >= 0 else None

    async def _finish_running_cell(self, index: int) -> tuple[str, str] | None:
        """Collect the running cell's output until it ends; return (ename, evalue) when it raised."""
        import nbformat

        cell = self.nb.cells[index]
        cell.setdefault("outputs", []).append(nbformat.v4.new_output("stream", name="stderr", text=GAP_NOTE))
        self._write()
        probe = self.kc.execute("", silent=True, store_history=False, user_expressions={"error": _LAST_ERROR})
        while True:
            if self._stop_reason:
                return None
            try:
                msg = await self.kc.iopub_channel.get_msg(timeout=0.2)
            except Empty:
                pass
            else:
                if msg["parent_header"].get("msg_id") != probe and msg["msg_type"] in _OUTPUT_TYPES:
                    content = msg["content"]
                    if msg["msg_type"] == "execute_result":
                        content = {**content, "execution_count": content.get("execution_count")}
                    cell.outputs.append(nbformat.v4.output_from_msg({**msg, "content": content}))
                    self._write_soon()
            try:
                reply = await self.kc.shell_channel.get_msg(timeout=0)
            except Empty:
                if not await asyncio.to_thread(self._alive):
                    from nbclient.exceptions import DeadKernelError

                    raise DeadKernelError("the kernel's container stopped") from None
                continue
            if reply["parent_header"].get("msg_id") != probe:
                continue
            self._write()
            answer = (reply["content"].get("user_expressions") or {}).get("error") or {}
            text = (answer.get("data") or {}).get("text/plain", "None")
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                value = None
            return (str(value[0]), str(value[1])) if isinstance(value, tuple) and len(value) == 2 else None

    # ------------------------------------------------------------------ state
    def _set_cell(self, index: int) -> None:
        assert self.record is not None
        self.record.data["cell"] = index

    def _cell(self) -> int | None:
        assert self.record is not None
        return self.record.data.get("cell")

    def _alive(self) -> bool:
        return self.manager.backend.container(self.container.id).state().running

    def _death_reason(self) -> str:
        state = self.manager.backend.container(self.container.id).state()
        if state.oom_killed:
            return "it ran out of its memory limit and was killed"
        return f"its container exited with code {state.exit_code}"

    async def _watch(self) -> None:
        """Cancel and timeout, as a normal run has them: interrupt the kernel, then kill it after a grace."""
        from .runner import INTERRUPT_GRACE

        deadline = self.started + self.timeout if self.timeout else None
        while self._stop_reason is None:
            await asyncio.sleep(0.1)
            if deadline is not None and time.time() >= deadline:
                self._stop_reason = TIMED_OUT
            elif self.cancel.is_set():
                self._stop_reason = CANCELLED
        self.log(f"{self._stop_reason}: interrupting the kernel")
        handle = self.manager.backend.container(self.container.id)
        await asyncio.to_thread(handle.kill, 2)  # SIGINT: tini forwards it to the kernel
        await asyncio.sleep(INTERRUPT_GRACE)
        await asyncio.to_thread(handle.kill, 9)

    def _write_soon(self) -> None:
        from .runner import OUTPUT_WRITE_INTERVAL

        if time.monotonic() - self._written_at >= OUTPUT_WRITE_INTERVAL:
            self._write()

    def _write(self) -> None:
        from nbformat.v4.nbjson import writes

        self._written_at = time.monotonic()
        atomic_write(self.output_path, writes(self.nb) + "\n")

    # ------------------------------------------------------------------ the end
    def finish(self, status: str, error: dict[str, Any] | None) -> None:
        """Close the output notebook's record, stop the kernel, remove its container and socket folder."""
        if self.record is not None:
            self.record.finish(status, seconds=max(0.0, time.time() - self.started), error=error)
            if status != COMPLETED and error is not None:
                from .report import add_error_markers

                summary = f"{error['ename']}: {error['evalue']}" if error.get("ename") else error["message"]
                add_error_markers(self.nb, error.get("cell_index"), summary)
            self._write()
        self.finish_dead()

    def finish_dead(self) -> None:
        """Stop listening, remove the kernel's container and its socket folder (with the key)."""
        if self.kc is not None:
            self.kc.stop_channels()
            self.kc = None
        self.manager.backend.remove_container(self.container.id)
        shutil.rmtree(self.folder, ignore_errors=True)


def resume(reattached: Reattached) -> tuple[str, dict[str, Any] | None] | None:
    """Run a re-attached job to its end in this (worker) thread; None when its kernel did not answer."""

    async def go() -> tuple[str, dict[str, Any] | None] | None:
        if not await reattached.connect():
            return None
        return await reattached.run()

    outcome = asyncio.run(go())
    if outcome is not None:
        reattached.finish(*outcome)
    return outcome
