"""Notebook jobs for the server: validated submission, a bounded number running at once, cancel, and
records in the SQLite store (so restarts lose nothing and report what was interrupted).

Jobs run ``execute_notebook`` in worker threads; the output notebook is written after every cell, so a
cancelled, failed or interrupted job keeps what it produced.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from traitlets import Enum, Instance, Int, Unicode, default
from traitlets.config import LoggingConfigurable

from ..errors import ConflictError, NotFoundError, RequestError
from .parameters import validate_parameters
from .runner import CANCELLED, ExecutionResult, check_notebook_file
from .store import ACTIVE, Job, JobStore, SweepRecord

#: The body fields of a sweep's bounds (``POST jobs`` with ``sweep``); the command line's --max-parallel ….
SWEEP_OPTIONS = ("max_parallel", "min_parallel", "target_utilization")


class JobManager(LoggingConfigurable):
    """The server's notebook jobs (``c.JobManager``), created by ``ContainersService`` with ``parent=``.

    Creating one marks the jobs that a previous server left queued or running as interrupted
    (their ids are in ``interrupted``).
    """

    max_running = Int(
        2,
        config=True,
        help="Notebook jobs run at once; later ones wait, queued (at least 1).",
    )
    outputs_dir = Unicode(
        "jobs",
        config=True,
        help="Folder, relative to the server root, for the jobs' output notebooks.",
    )
    db = Unicode(
        config=True,
        help="SQLite file of notebook jobs. Default: one per server root in Jupyter's data folder "
        "(jupyter_containers/jobs-HASH.sqlite).",
    )
    on_restart = Enum(
        ["reattach", "stop"],
        "reattach",
        config=True,
        help="What a server does with a job that the previous server left running: 'reattach' (default) "
        "re-attaches to its kernel when that kernel is still alive, keeps the running cell's output and runs "
        "the remaining cells; 'stop' stops its container. Either way a job whose kernel died is marked "
        "interrupted and its container removed.",
    )
    store = Instance(JobStore)

    @default("db")
    def _default_db(self) -> str:
        from jupyter_core.paths import jupyter_data_dir

        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        return str(Path(jupyter_data_dir()) / "jupyter_containers" / f"jobs-{digest}.sqlite")

    @default("store")
    def _default_store(self) -> JobStore:
        return JobStore(Path(self.db))

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        #: Jobs run at once (max_running, at least 1): the slots, and the most a sweep may ask for.
        self._limit = max(1, self.max_running)
        self._slots = threading.BoundedSemaphore(self._limit)
        self._cancel: dict[str, threading.Event] = {}
        #: Sweeps whose thread still runs (submit_sweep), by id.
        self._sweeps_running: set[str] = set()
        self.interrupted = self.store.mark_interrupted()

    @property
    def service(self) -> Any:
        """The ``ContainersService`` this manager was created by (its ``parent``)."""
        return self.parent

    def recover_interrupted(self) -> list[str]:
        """After a restart, for each job the previous server left running: re-attach to its kernel when it is
        alive and ``on_restart`` is "reattach" (the job goes on in a worker thread, see :mod:`.reattach`);
        else say in its output notebook that it was interrupted (its partial output is already there: outputs
        are written as they arrive) and stop its container, which would otherwise hold its CPUs and memory
        until its notebook ends. Returns what it did, for the log.
        """
        from ..errors import ContainersError

        done: list[str] = []
        for job_id in self.interrupted:
            job = self.store.get(job_id)
            if job is None:
                continue
            try:
                # The job's own engine: a job on a remote target left its container there.
                manager = self.service.get_manager().for_target(job.target)
                containers = manager.backend.list_containers(
                    all=True, labels={**manager.scope_filter(), "io.jupyter.containers.job": job_id}
                )
            except ContainersError as exc:
                self.log.warning("job %s: could not look for its container: %s", job_id, exc)
                containers = []
            if self.on_restart == "reattach" and job.output_path:
                running = [c for c in containers if c.state == "running"]
                if running and self._reattach(job, manager, running[0]):
                    done.append(f"job {job_id}: re-attaching to its kernel in container {running[0].id[:12]}")
                    continue
            if self._mark_interrupted(job):
                done.append(f"job {job_id}: output notebook {job.output_path} marked interrupted")
            for container in containers:
                try:
                    manager.backend.remove_container(container.id)
                    done.append(f"job {job_id}: stopped its container {container.id[:12]}")
                except ContainersError as exc:
                    self.log.warning("job %s: could not stop its container: %s", job_id, exc)
        return done

    def _mark_interrupted(self, job: Job) -> bool:
        """Close the output notebook's run record as interrupted; whether there was a running record."""
        from ..images.lock import atomic_write
        from .provenance import RunRecord

        path = self.root / job.output_path if job.output_path else None
        if path is None or not path.is_file():
            return False
        try:
            import nbformat
            from nbformat.v4.nbjson import writes

            nb = nbformat.read(path, as_version=4)
            record = RunRecord.read(nb)
            if record is None or record.status != "running":
                return False
            seconds = (job.finished or time.time()) - (job.started or time.time())
            record.finish(
                "interrupted",
                seconds=max(0.0, seconds),
                error={"message": "the server stopped while this job was running"},
            )
            atomic_write(path, writes(nb) + "\n")
            return True
        except (OSError, ValueError) as exc:
            self.log.warning("job %s: could not mark its output notebook interrupted: %s", job.id, exc)
            return False

    def _reattach(self, job: Job, manager: Any, container: Any) -> bool:
        """Start re-attaching to a job's live kernel in a worker thread; False when that is not possible
        (no socket folder, no output notebook): the caller stops it instead."""
        from ..kernel.container import socket_folder
        from .reattach import Reattached

        folder = socket_folder(container)
        output = self.root / (job.output_path or "")
        if folder is None or not output.is_file():
            return False
        cancel = threading.Event()
        self._cancel[job.id] = cancel
        self.store.update(job.id, status="running", finished=None, error=None)
        reattached = Reattached(
            manager=manager,
            container=container,
            folder=folder,
            output_path=output,
            cwd=(self.root / job.notebook).parent,
            timeout=None,  # the run's own, from its record
            started=job.started,
            cancel=cancel,
            log=lambda text: self.log.info("job %s: %s", job.id, text),
        )
        threading.Thread(target=self._resume, args=(job, reattached), name=f"job-{job.id}", daemon=True).start()
        return True

    def _resume(self, job: Job, reattached: Any) -> None:
        from .reattach import resume

        try:
            with self._slots:
                outcome = resume(reattached)
            if outcome is None:
                # The kernel did not answer after all: as if it had died.
                self.log.warning("job %s: its kernel does not answer; stopping its container", job.id)
                self._mark_interrupted(job)
                reattached.finish_dead()
                self.store.update(
                    job.id,
                    status="interrupted",
                    finished=time.time(),
                    error={"message": "the server stopped while this job was running"},
                )
                return
            status, error = outcome
            self.store.update(job.id, status=status, finished=time.time(), error=error)
        except Exception as exc:  # noqa: BLE001 - the job record must always end
            self.store.update(
                job.id, status="failed", finished=time.time(), error={"message": f"{exc.__class__.__name__}: {exc}"}
            )
            try:
                reattached.finish_dead()
            except Exception:  # noqa: BLE001 - best effort: the container may be gone already
                pass
        finally:
            self._cancel.pop(job.id, None)

    @property
    def root(self) -> Path:
        return Path(self.service.root_dir).resolve()

    # ------------------------------------------------------------------ submit
    def submit(self, body: dict[str, Any]) -> Job:
        for name in SWEEP_OPTIONS:
            if name in body:
                raise RequestError(f'{name}: only for a sweep; give "sweep" too, or leave {name} out')
        checked = self._checked(body)
        path, environment, target, manager, parameters, report_mode, resources = checked
        job = self.store.create(
            str(path.relative_to(self.root)),
            environment,
            str(manager.spec_file()),
            parameters,
            resources.to_dict(),
            target=target,
        )
        output = Path(self.outputs_dir) / f"{path.stem}-{job.id}.ipynb"
        self.store.update(job.id, output_path=str(output))
        job.output_path = str(output)
        self._cancel[job.id] = threading.Event()
        threading.Thread(
            target=self._run, args=(job.id, resources, report_mode), name=f"job-{job.id}", daemon=True
        ).start()
        return job

    def _checked(self, body: dict[str, Any]) -> tuple[Path, str, str | None, Any, dict[str, Any], bool, Any]:
        """A job body's notebook, environment, target (and its manager), parameters, report mode and effective
        resources, each checked (a 400 or 404 naming the field) before anything is recorded or run."""
        notebook = body.get("notebook")
        if not isinstance(notebook, str) or not notebook.endswith(".ipynb"):
            raise RequestError("notebook: give the path of a .ipynb file, relative to the server root")
        if "\0" in notebook or len(notebook) > 4096 or any(len(part) > 255 for part in Path(notebook).parts):
            raise RequestError("notebook: not a usable path (a NUL byte, or a name longer than the file system allows)")
        path = (self.root / notebook).resolve()
        if self.root not in path.parents:
            raise RequestError(f"notebook: {notebook!r} is outside the server root")
        if not path.is_file():
            raise NotFoundError(f"notebook {notebook!r} does not exist")
        environment = body.get("environment")
        if not isinstance(environment, str):
            raise RequestError("environment: give the name of an environment of the spec file")
        target = body.get("target")
        if target is not None and (not isinstance(target, str) or not target):
            raise RequestError(f"target: give the name of a [targets.NAME] of the spec file, not {target!r}")
        manager = self.service.get_manager().for_target(target)  # an unknown target: 400 naming it
        manager.environment(environment)  # 404 with a "did you mean" for unknown names
        parameters = validate_parameters(body.get("parameters") or {})  # lists and objects too, bounded
        report_mode = body.get("report_mode", False)
        if not isinstance(report_mode, bool):
            raise RequestError(f"report_mode: give true or false, not {report_mode!r}")
        check_notebook_file(path, notebook=notebook, environment=environment)  # e.g. an R notebook: 400
        resources = self.service.validate_resources(body.get("resources"), environment=environment)
        return path, environment, target, manager, parameters, report_mode, resources

    # ------------------------------------------------------------------ sweeps
    def submit_sweep(self, body: dict[str, Any]) -> dict[str, Any]:
        """One job per combination of the body's ``sweep`` (see :func:`.sweep.sweep_axes`), all sharing a sweep
        id, run by :class:`.sweep.Sweep` (the HPA rule decides how many at once, within ``max_parallel``, which
        may not exceed ``max_running``). Each job is an ordinary job of this manager (listed, cancellable, its
        container labelled with its id); its output notebook is named by its parameters, in a folder of the
        sweep under ``outputs_dir``. Returns the sweep's summary (:meth:`sweep`).
        """
        from .sweep import Sweep, SweepJob, check_options, combinations, output_paths, sweep_axes

        path, environment, target, manager, parameters, report_mode, resources = self._checked(body)
        axes = sweep_axes(body.get("sweep"), fixed=parameters)
        max_parallel = body.get("max_parallel", min(4, self._limit))
        min_parallel = body.get("min_parallel", 1)
        target_utilization = body.get("target_utilization", 0.8)
        check_options(max_parallel, min_parallel, target_utilization, names=SWEEP_OPTIONS)
        if max_parallel > self._limit:
            raise RequestError(
                f"max_parallel: {max_parallel} is over this server's {self._limit} jobs at once "
                "(c.JobManager.max_running); give at most that"
            )
        combos = combinations(axes)
        ids: list[str] = []  # the job id of each combination, in order (a job's "sweep-job" label is its index)
        sweep = Sweep(
            manager,
            notebook=path,
            environment=environment,
            jobs=[],
            fixed=parameters,
            resources=resources,
            max_parallel=max_parallel,
            min_parallel=min_parallel,
            target_utilization=target_utilization,
            report_mode=report_mode,
            log=lambda text: self.log.info("%s", text),
            run_job=lambda request, **kwargs: self._run_sweep_job(ids, resources, request, **kwargs),
        )
        stem = path.stem
        folder = Path(self.outputs_dir) / f"{stem}-{sweep.sweep_id}"
        notebook = str(path.relative_to(self.root))
        self.store.create_sweep(
            SweepRecord(
                id=sweep.sweep_id,
                notebook=notebook,
                environment=environment,
                axes=[name for name, _ in axes],
                options={
                    "max_parallel": max_parallel,
                    "min_parallel": min_parallel,
                    "target_utilization": target_utilization,
                },
                target=target,
            )
        )
        spec_file = str(manager.spec_file())
        for index, (combo, output) in enumerate(zip(combos, output_paths(folder, stem, combos), strict=True)):
            job = self.store.create(
                notebook,
                environment,
                spec_file,
                {**parameters, **combo},
                resources.to_dict(),
                target,
                sweep.sweep_id,
                output_path=str(output),
            )
            ids.append(job.id)
            sweep.jobs.append(SweepJob(index=index, parameters=combo, output_path=self.root / output))
            self._cancel[job.id] = sweep.jobs[-1].cancel
        (self.root / folder).mkdir(parents=True, exist_ok=True)
        name = f"sweep-{sweep.sweep_id}"
        self._sweeps_running.add(sweep.sweep_id)
        threading.Thread(target=self._run_sweep, args=(sweep, ids), name=name, daemon=True).start()
        return self.sweep(sweep.sweep_id)

    def _run_sweep(self, sweep: Any, ids: list[str]) -> None:
        try:
            sweep.run()
        except Exception as exc:  # noqa: BLE001 - e.g. the image does not build: every job left says why
            message = str(exc) or exc.__class__.__name__
            for job in self.store.list(sweep=sweep.sweep_id):
                if job.status == "queued":
                    self.store.update(job.id, status="failed", finished=time.time(), error={"message": message})
        finally:
            self.store.update_sweep(sweep.sweep_id, peak=sweep.peak)
            for job_id in ids:
                self._cancel.pop(job_id, None)
            self._sweeps_running.discard(sweep.sweep_id)

    def _run_sweep_job(
        self, ids: list[str], resources: Any, request: Any, *, manager: Any, log: Any, cancel: Any
    ) -> Any:
        """One job of a sweep (``Sweep(run_job=…)``): as :meth:`_run` runs a job (:meth:`_execute_recorded`); a job
        cancelled while queued does not start and comes back cancelled. A failure is re-raised: the sweep records
        it too."""
        job_id = ids[int(request.labels["sweep-job"])]
        result = self._execute_recorded(
            job_id,
            cancel,
            lambda: (manager, replace(request, labels={**request.labels, "job": job_id}, timeout=resources.timeout)),
        )
        if result is None:
            return ExecutionResult(
                status=CANCELLED,
                output_path=request.output_path,
                environment=request.environment,
                seconds=0.0,
                cells_executed=0,
                error={"message": "cancelled"},
            )
        return result

    def _execute_recorded(
        self, job_id: str, cancel: threading.Event, prepare: Callable[[], tuple[Any, Any]]
    ) -> ExecutionResult | None:
        """Run a job within this server's slots and record it: ``running`` with its start once it has a slot, then
        its result's status, or ``failed`` naming the exception (re-raised). ``prepare`` gives the (manager,
        request) to execute, once the job has its slot. None, with nothing recorded, when the job was cancelled
        before it got a slot (:meth:`cancel` recorded that)."""
        if cancel.is_set():
            return None
        with self._slots:
            if cancel.is_set():
                return None
            self.store.update(job_id, status="running", started=time.time())
            try:
                manager, request = prepare()
                result = manager.execute(
                    request, log=lambda text: self.log.info("job %s: %s", job_id, text), cancel=cancel
                )
                self.store.update(job_id, status=result.status, finished=time.time(), error=result.error)
            except Exception as exc:  # the job record must always end
                error = {"message": f"{exc.__class__.__name__}: {exc}"}
                self.store.update(job_id, status="failed", finished=time.time(), error=error)
                raise
            return result

    def _sweep_record(self, sweep_id: str) -> SweepRecord:
        record = self.store.get_sweep(sweep_id)
        if record is None:
            raise NotFoundError(f"no sweep {sweep_id!r}")
        return record

    def sweep(self, sweep_id: str) -> dict[str, Any]:
        """A sweep's summary: its jobs and the table the command line prints at the end (the swept
        parameters, status, time and output notebook of each job), from the store (so it survives a restart)."""
        from .provenance import COMPLETED
        from .sweep import SweepJob, summary_rows

        record = self._sweep_record(sweep_id)
        jobs = self.store.list(sweep=sweep_id)
        rows = [
            SweepJob(
                index=index,
                parameters={name: job.parameters.get(name) for name in record.axes},
                output_path=Path(job.output_path or ""),
                status=job.status,
                seconds=(job.finished - job.started) if job.finished and job.started else None,
                error=(job.error or {}).get("message"),
            )
            for index, job in enumerate(jobs)
        ]
        counts = dict(Counter(job.status for job in jobs))
        done = counts.get(COMPLETED, 0)
        # Running until its thread has recorded the peak too: the last job's record is written before that.
        if any(job.status in ACTIVE for job in jobs) or sweep_id in self._sweeps_running:
            status = "running"
        else:
            status = COMPLETED if done == len(jobs) else "failed"
        return {
            "id": record.id,
            "notebook": record.notebook,
            "environment": record.environment,
            "target": record.target,
            "parameters": record.axes,
            **record.options,
            "created": record.created,
            "status": status,
            "counts": counts,
            "peak": record.peak,
            "summary": f"{done} of {len(jobs)} jobs completed"
            + (f", at most {record.peak} at once" if record.peak else ""),
            "table": summary_rows(rows),
            "jobs": [
                {**job.to_dict(), "seconds": None if row.seconds is None else round(row.seconds, 2)}
                for job, row in zip(jobs, rows, strict=True)
            ],
        }

    def cancel_sweep(self, sweep_id: str) -> dict[str, Any]:
        """Cancel every job of a sweep that has not ended (running ones keep their output so far)."""
        self._sweep_record(sweep_id)  # 404 for an unknown sweep
        for job in self.store.list(sweep=sweep_id):
            if job.status in ACTIVE:
                self._cancel_job(job)
        return self.sweep(sweep_id)

    def _run(self, job_id: str, resources: Any, report_mode: bool = False) -> None:
        from .runner import ExecuteRequest

        cancel = self._cancel[job_id]
        try:
            job = self.store.get(job_id)
            if job is None:
                return

            def prepare() -> tuple[Any, Any]:
                output = self.root / (job.output_path or f"{self.outputs_dir}/{job_id}.ipynb")
                output.parent.mkdir(parents=True, exist_ok=True)
                request = ExecuteRequest(
                    notebook=self.root / job.notebook,
                    environment=job.environment,
                    output_path=output,
                    parameters=job.parameters,
                    resources=resources,
                    timeout=resources.timeout,
                    labels={"job": job_id},
                    report_mode=report_mode,
                )
                # Through the manager: a swarm target's reschedule_on_node_failure reruns a job whose node died.
                return self.service.get_manager().for_target(job.target), request

            try:
                self._execute_recorded(job_id, cancel, prepare)
            except Exception:  # noqa: BLE001 - recorded as the job's error (a thread of its own: nobody to tell)
                pass
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
        self._cancel_job(self.get(job_id))
        return self.get(job_id)

    def _cancel_job(self, job: Job) -> None:
        """Cancel ``job`` as last read from the store: a running one stops at its next cell, a queued one never
        starts (and is recorded cancelled now).

        Raises:
            ConflictError: it had already ended.
        """
        if job.status not in ACTIVE:
            raise ConflictError(f"job {job.id} already ended ({job.status}); nothing to cancel")
        event = self._cancel.get(job.id)
        if event is not None:
            event.set()
        if job.status == "queued":
            self.store.update(job.id, status="cancelled", finished=time.time(), error={"message": "cancelled"})

    def output(self, job_id: str) -> dict[str, Any]:
        job = self.get(job_id)
        path = self.root / (job.output_path or "")
        if not job.output_path or not path.is_file():
            raise NotFoundError(f"job {job_id} has no output notebook yet (status: {job.status})")
        return json.loads(path.read_text(encoding="utf-8"))
