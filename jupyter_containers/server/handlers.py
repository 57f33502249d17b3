"""REST handlers under ``/jupyter-containers/api/``.

Every handler is authenticated and authorized (resource ``containers``), reads a validated body, runs
blocking engine work in a thread, and lets ``ContainersHandler.call`` map our errors to status codes in
one place: 400 bad input, 404 unknown, 409 conflict, 502 engine refusal, 503 engine unreachable.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web

from ..errors import (
    BackendError,
    BuildError,
    ConflictError,
    ContainersError,
    EngineUnavailableError,
    GpuUnavailableError,
    NotFoundError,
    RequestError,
    RunError,
    SessionError,
    SpecError,
    SpecNotFoundError,
)
from ..redact import redact

AUTH_RESOURCE = "containers"
#: No request of this API needs more (a job body is a notebook path, names and a few parameters).
MAX_BODY = 1 << 20
API = "/jupyter-containers/api"
#: Seconds between two looks at the spec files' stamps while a ``spec/changes`` request waits.
SPEC_POLL = 0.25


def status_for(exc: ContainersError) -> int:
    """The one mapping from our errors to HTTP status codes (500 is left for our own bugs).

    400 the request or the spec is invalid, 404 no such thing (or not the caller's), 409 the state does not
    allow it (a finished job, a GPU the engine lacks, a kernel that died), 422 the environment does not
    build, 502 the engine refused, 503 no engine answers.
    """
    if isinstance(exc, SpecNotFoundError | NotFoundError):
        return 404
    if isinstance(exc, SpecError | RequestError):
        return 400
    if isinstance(exc, EngineUnavailableError):
        return 503
    if isinstance(exc, GpuUnavailableError | RunError | ConflictError | SessionError):
        return 409
    if isinstance(exc, BuildError):
        return 422
    if isinstance(exc, BackendError):
        return 502
    return 500


class ContainersHandler(ExtensionHandlerMixin, APIHandler):
    auth_resource = AUTH_RESOURCE

    @property
    def service(self) -> Any:
        return self.settings["jupyter_containers_service"]

    async def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run blocking work off the event loop; our errors become HTTP errors with their message."""
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except ContainersError as exc:
            raise web.HTTPError(status_for(exc), reason=_reason(exc), log_message=redact(str(exc))) from None

    def body(self, allowed: set[str]) -> dict[str, Any]:
        if not self.request.body:
            return {}
        if len(self.request.body) > MAX_BODY:
            raise web.HTTPError(413, reason=f"the request body is over {MAX_BODY // 1024} KiB")
        try:
            data = json.loads(self.request.body)
        except ValueError as exc:
            raise web.HTTPError(400, reason="the request body is not valid JSON", log_message=str(exc)) from None
        except RecursionError:
            raise web.HTTPError(400, reason="the request body is nested too deeply") from None
        if not isinstance(data, dict):
            raise web.HTTPError(400, reason="the request body must be a JSON object")
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise web.HTTPError(
                400, reason=f"unknown field {unknown[0]!r}; allowed: {', '.join(sorted(allowed)) or 'none'}"
            )
        return data

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """JSON errors whose ``message`` a user can act on (APIHandler's, with our reason as the message)."""
        self.set_header("Content-Type", "application/json")
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = redact(getattr(exc, "log_message", None) or self._reason)
        self.finish(json.dumps({"message": message, "reason": self._reason, "status": status_code}))


def _reason(exc: Exception) -> str:
    # HTTP reason phrases must be one line of latin-1; the full message is in the JSON body.
    return redact(str(exc)).splitlines()[0].encode("latin-1", "replace").decode("latin-1")[:200]


def _target(handler: web.RequestHandler) -> str | None:
    """The ``?target=NAME`` query argument (None without one; an empty one is refused by the service)."""
    return handler.get_argument("target", None)


class EngineHandler(ContainersHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.finish(json.dumps(await self.call(self.service.engine, _target(self))))


class TargetsHandler(ContainersHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.finish(json.dumps({"targets": await self.call(self.service.targets)}))


class SchemaHandler(ContainersHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        from ..spec.schema import SPEC_SCHEMA

        self.finish(json.dumps(SPEC_SCHEMA))


class EnvironmentsHandler(ContainersHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.finish(json.dumps({"environments": await self.call(self.service.environments, _target(self))}))


class EnvironmentHandler(ContainersHandler):
    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        self.finish(json.dumps(await self.call(self.service.environment, name)))


class BuildStartHandler(ContainersHandler):
    @web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        body = self.body({"target"})
        build, new = await self.call(self.service.start_build, name, body.get("target"))
        self.set_status(202)
        self.set_header("Location", f"{self.base_url.rstrip('/')}{API}/builds/{build['id']}")
        self.finish(json.dumps({**build, "joined": not new}))


class BuildsHandler(ContainersHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.finish(json.dumps({"builds": [b.to_dict() for b in self.service.builds.all()]}))


class BuildHandler(ContainersHandler):
    @web.authenticated
    @authorized
    async def get(self, build_id: str) -> None:
        build = await self.call(self.service.build, build_id)
        self.finish(json.dumps(build.to_dict()))


class BuildLogHandler(ContainersHandler):
    """The build log: JSON pages (``?since=N&wait=S``, long-polling) or Server-Sent Events."""

    @web.authenticated
    @authorized
    async def get(self, build_id: str) -> None:
        build = await self.call(self.service.build, build_id)
        since = _query_number(self, "since", 0)
        if "text/event-stream" in self.request.headers.get("Accept", ""):
            await self._stream(build, since)
            return
        wait = min(_query_number(self, "wait", 0.0, float), 30.0)
        events = await asyncio.to_thread(build.wait_for_events, since, wait) if wait else build.events[since:]
        self.finish(json.dumps({"events": events, "next": since + len(events), "build": build.to_dict()}))

    async def _stream(self, build: Any, since: int) -> None:
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        position = since
        while True:
            events = await asyncio.to_thread(build.wait_for_events, position, 1.0)
            for event in events:
                self.write(f"id: {position}\nevent: build\ndata: {json.dumps(event)}\n\n")
                position += 1
            if build.status != "building" and position >= len(build.events):
                self.write(f"event: end\ndata: {json.dumps(build.to_dict())}\n\n")
                await self.flush()
                break
            try:
                await self.flush()
            except Exception:  # noqa: BLE001 - the client went away
                return
        self.finish()


class ContainersListHandler(ContainersHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(await self.call(self.service.containers_json, _target(self)))


class UtilizationHandler(ContainersHandler):
    """``GET utilization[?target=NAME]``: used / total per node and per target (docs/server.md)."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.finish(json.dumps(await self.call(self.service.utilization, _target(self))))


class ContainerHandler(ContainersHandler):
    @web.authenticated
    @authorized
    async def delete(self, container_id: str) -> None:
        await self.call(self.service.stop_container, container_id, _target(self))
        self.set_status(204)
        self.finish()


class ContainerLogsHandler(ContainersHandler):
    @web.authenticated
    @authorized
    async def get(self, container_id: str) -> None:
        tail = min(_query_number(self, "tail", 500), 10000)
        logs = await self.call(self.service.container_logs, container_id, tail, _target(self))
        self.finish(json.dumps({"logs": logs}))


class JobsHandler(ContainersHandler):
    """``GET jobs[?sweep=ID]`` (the newest jobs, or every job of a sweep); ``POST jobs``: one job, or with
    ``sweep`` one job per combination (201 with the sweep's summary, ``Location: …/sweeps/ID``)."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        sweep = self.get_argument("sweep", None)
        if sweep is not None:
            summary = await self.call(self.service.jobs.sweep, sweep)  # 404 for an unknown sweep
            self.finish(json.dumps({"jobs": summary["jobs"]}))
            return
        jobs = await self.call(self.service.jobs.list)
        self.finish(json.dumps({"jobs": [j.to_dict() for j in jobs]}))

    @web.authenticated
    @authorized
    async def post(self) -> None:
        from ..jobs.manager import SWEEP_OPTIONS  # the job manager's module, loaded with the service's jobs

        body = self.body(
            {"notebook", "environment", "parameters", "resources", "report_mode", "target", "sweep", *SWEEP_OPTIONS}
        )
        self.set_status(201)
        if "sweep" in body:
            sweep = await self.call(self.service.jobs.submit_sweep, body)
            self.set_header("Location", f"{self.base_url.rstrip('/')}{API}/sweeps/{sweep['id']}")
            self.finish(json.dumps(sweep))
            return
        job = await self.call(self.service.jobs.submit, body)
        self.set_header("Location", f"{self.base_url.rstrip('/')}{API}/jobs/{job.id}")
        self.finish(json.dumps(job.to_dict()))


class SweepHandler(ContainersHandler):
    """``GET sweeps/ID``: the summary the command line prints at the end; ``DELETE``: cancel its jobs."""

    @web.authenticated
    @authorized
    async def get(self, sweep_id: str) -> None:
        self.finish(json.dumps(await self.call(self.service.jobs.sweep, sweep_id)))

    @web.authenticated
    @authorized
    async def delete(self, sweep_id: str) -> None:
        sweep = await self.call(self.service.jobs.cancel_sweep, sweep_id)
        self.set_status(202)
        self.finish(json.dumps(sweep))


class JobHandler(ContainersHandler):
    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        job = await self.call(self.service.jobs.get, job_id)
        self.finish(json.dumps(job.to_dict()))

    @web.authenticated
    @authorized
    async def delete(self, job_id: str) -> None:
        job = await self.call(self.service.jobs.cancel, job_id)
        self.set_status(202)
        self.finish(json.dumps(job.to_dict()))


class JobOutputHandler(ContainersHandler):
    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        self.finish(json.dumps(await self.call(self.service.jobs.output, job_id)))


class NotebookCheckHandler(ContainersHandler):
    """The notebook toolbar item: do the notebook's recorded environments still match the workspace?"""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        path = self.get_argument("path", "")
        self.finish(json.dumps(await self.call(self.service.check_notebook, path)))


class KernelRecordHandler(ContainersHandler):
    @web.authenticated
    @authorized
    async def get(self, kernel_id: str) -> None:
        self.finish(json.dumps(await self.call(self.service.kernel_record, kernel_id)))


class NotebookRestoreHandler(ContainersHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.body({"path", "environment", "overwrite"})
        self.finish(json.dumps(await self.call(self.service.restore_notebook, body)))


class SpecChangesHandler(ContainersHandler):
    """``GET spec/changes?since=VERSION&wait=S``: the spec's ``{version, error}`` as soon as its version is not
    ``since`` (the spec file or a file it references changed), else after ``wait`` seconds (at most 30). The
    sidebar long-polls it, so an edit of the spec shows within a fraction of a second."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        since = self.get_argument("since", "")
        wait = min(_query_number(self, "wait", 0.0, float), 30.0)
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            state = await self.call(self.service.spec_state)
            if state["version"] != since or asyncio.get_running_loop().time() >= deadline:
                break
            await asyncio.sleep(SPEC_POLL)
        self.finish(json.dumps(state))


class PackagesHandler(ContainersHandler):
    """``POST environments/NAME/packages`` ``{package, version?, target?}``: "Add package…" (checked on the
    index, added to the spec file, then built)."""

    @web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        body = self.body({"package", "version", "target"})
        result = await self.call(self.service.add_package, name, body)
        self.set_status(202)
        self.finish(json.dumps(result))


def _query_number(handler: web.RequestHandler, name: str, default: float, kind: type = int) -> Any:
    """A non-negative query argument of ``kind`` (int: whole numbers; float: seconds); else a 400 naming it."""
    value = handler.get_argument(name, str(default))
    what = "a whole number" if kind is int else "a number of seconds"
    try:
        number = kind(value)
    except ValueError:
        raise web.HTTPError(400, reason=f"query argument {name}={value!r} must be {what}") from None
    if not 0 <= number < float("inf"):  # also refuses nan
        raise web.HTTPError(400, reason=f"query argument {name}={value!r} must be {what}, not negative")
    return number


NAME = r"(?P<name>[a-z0-9][a-z0-9._-]*)"
ID = r"(?P<{}>[A-Za-z0-9]+)"


def _share_handlers() -> list[tuple[str, type]]:
    from .share_handlers import share_handlers  # export, import, push, pull, binder, reproduce

    return share_handlers()


def handlers() -> list[tuple[str, type]]:
    return [
        (rf"{API}/engine", EngineHandler),
        (rf"{API}/targets", TargetsHandler),
        (rf"{API}/schema", SchemaHandler),
        (rf"{API}/environments", EnvironmentsHandler),
        (rf"{API}/environments/{NAME}", EnvironmentHandler),
        (rf"{API}/environments/{NAME}/build", BuildStartHandler),
        (rf"{API}/environments/{NAME}/packages", PackagesHandler),
        (rf"{API}/spec/changes", SpecChangesHandler),
        (rf"{API}/builds", BuildsHandler),
        (rf"{API}/builds/{ID.format('build_id')}", BuildHandler),
        (rf"{API}/builds/{ID.format('build_id')}/log", BuildLogHandler),
        (rf"{API}/containers", ContainersListHandler),
        (rf"{API}/utilization", UtilizationHandler),
        (rf"{API}/containers/{ID.format('container_id')}", ContainerHandler),
        (rf"{API}/containers/{ID.format('container_id')}/logs", ContainerLogsHandler),
        (rf"{API}/jobs", JobsHandler),
        (rf"{API}/jobs/{ID.format('job_id')}", JobHandler),
        (rf"{API}/jobs/{ID.format('job_id')}/output", JobOutputHandler),
        (rf"{API}/sweeps/{ID.format('sweep_id')}", SweepHandler),
        (rf"{API}/notebooks/check", NotebookCheckHandler),
        (rf"{API}/kernels/(?P<kernel_id>[A-Za-z0-9-]+)/record", KernelRecordHandler),
        (rf"{API}/notebooks/restore", NotebookRestoreHandler),
        *_share_handlers(),
    ]
