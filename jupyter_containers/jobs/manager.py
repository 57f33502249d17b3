"""Notebook jobs for the server: validated submission, a bounded number running at once, cancel, and
records in the SQLite store (so restarts lose nothing and report what was interrupted).

Jobs run ``execute_notebook`` in worker threads; the output notebook is written after every cell, so a
cancelled, failed or interrupted job keeps what it produced.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import ConflictError, NotFoundError, SpecError
from .store import ACTIVE, Job, JobStore


class JobManager:
    def __init__(self, service: Any, store: JobStore, *, outputs_dir: str = "jobs", max_running: int = 2):
        self.service = service
        self.store = store
        self.outputs_dir = outputs_dir
        self._slots = threading.BoundedSemaphore(max(1, max_running))
        self._cancel: dict[str, threading.Event] = {}
        self.interrupted = store.mark_interrupted()

    @property
    def root(self) -> Path:
        return Path(self.service.root_dir).resolve()

    # ------------------------------------------------------------------ submit
    def submit(self, body: dict[str, Any]) -> Job:
        notebook = body.get("notebook")
        if not isinstance(notebook, str) or not notebook.endswith(".ipynb"):
            raise SpecError("notebook: give the path of a .ipynb file, relative to the server root")
        path = (self.root / notebook).resolve()
        if self.root not in path.parents:
            raise SpecError(f"notebook: {notebook!r} is outside the server root")
        if not path.is_file():
            raise NotFoundError(f"notebook {notebook!r} does not exist")
        environment = body.get("environment")
        if not isinstance(environment, str):
            raise SpecError("environment: give the name of an environment of the spec file")
        manager = self.service.get_manager()
        manager.environment(environment)  # 404 with a "did you mean" for unknown names
        parameters = body.get("parameters") or {}
        if not isinstance(parameters, dict) or not all(isinstance(k, str) and k.isidentifier() for k in parameters):
            raise SpecError("parameters: give an object whose keys are Python identifiers")
        try:
            json.dumps(parameters)
        except (TypeError, ValueError):
            raise SpecError(
                "parameters: values must be JSON (numbers, strings, booleans, null, lists, objects)"
            ) from None
        resources = self.service.validate_resources(body.get("resources"))
        job = self.store.create(
            str(path.relative_to(self.root)), environment, str(manager.spec_file()), parameters, resources.to_dict()
        )
        output = Path(self.outputs_dir) / f"{path.stem}-{job.id}.ipynb"
        self.store.update(job.id, output_path=str(output))
        job.output_path = str(output)
        self._cancel[job.id] = threading.Event()
        threading.Thread(target=self._run, args=(job.id, resources), name=f"job-{job.id}", daemon=True).start()
        return job

    def _run(self, job_id: str, resources: Any) -> None:
        from .runner import execute_notebook

        cancel = self._cancel[job_id]
        with self._slots:
            job = self.store.get(job_id)
            if job is None or cancel.is_set():
                return
            self.store.update(job_id, status="running", started=time.time())
            output = self.root / (job.output_path or f"{self.outputs_dir}/{job_id}.ipynb")
            output.parent.mkdir(parents=True, exist_ok=True)
            try:
                result = execute_notebook(
                    self.root / job.notebook,
                    environment=job.environment,
                    output_path=output,
                    parameters=job.parameters,
                    resources=resources,
                    spec_file=job.spec_file,
                    manager=self.service.get_manager(),
                    timeout=resources.timeout,
                    cwd=(self.root / job.notebook).parent,
                    log=lambda text: self.service.log.info("job %s: %s", job_id, text),
                    cancel=cancel,
                )
                self.store.update(job_id, status=result.status, finished=time.time(), error=result.error)
            except Exception as exc:  # noqa: BLE001 - the job record must always end
                self.store.update(
                    job_id, status="failed", finished=time.time(), error={"message": f"{exc.__class__.__name__}: {exc}"}
                )
            finally:
                self._cancel.pop(job_id, None)

    # ------------------------------------------------------------------ read / cancel
    def get(self, job_id: str) -> Job:
        job = self.store.get(job_id)
        if job is None:
            raise NotFoundError(f"no job {job_id!r}")
        return job

    def list(self) -> list[Job]:
        return self.store.list()

    def cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job.status not in ACTIVE:
            raise ConflictError(f"job {job_id} already ended ({job.status}); nothing to cancel")
        event = self._cancel.get(job_id)
        if event is not None:
            event.set()
        if job.status == "queued":
            self.store.update(job_id, status="cancelled", finished=time.time(), error={"message": "cancelled"})
        return self.get(job_id)

    def output(self, job_id: str) -> dict[str, Any]:
        job = self.get(job_id)
        path = self.root / (job.output_path or "")
        if not job.output_path or not path.is_file():
            raise NotFoundError(f"job {job_id} has no output notebook yet (status: {job.status})")
        return json.loads(path.read_text(encoding="utf-8"))
