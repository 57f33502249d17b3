"""Sharing through the REST API: export, import, push, pull, binder export and reproduce as background operations.

Each request is checked first (names, paths, registry) and answered 202 with an operation to follow, as builds
are: ``GET operations/ID`` says ``running``, ``completed`` (with the result) or ``failed`` (with the message and
the status code the error would have had). Every path is relative to the server root and stays inside it (a
bundle import too: its target folder is inside the root, and the bundle's own members are confined to that
folder by ``share/bundle.py``). Registry credentials come from Docker's configuration only and are never in an
answer: results and errors are redacted.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ContainersError, NotFoundError, RequestError
from ..redact import redact, redact_data

#: Operations kept while the server runs (the oldest finished ones go first).
MAX_KEPT = 200
KINDS = ("export", "import", "push", "pull", "binder", "reproduce")


@dataclass
class Operation:
    id: str
    kind: str
    subject: str
    status: str = "running"
    started: float = field(default_factory=time.time)
    finished: float | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    log: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "subject": self.subject,
            "status": self.status,
            "started": self.started,
            "finished": self.finished,
            "result": self.result,
            "error": self.error,
            "log": self.log[-200:],
        }


class Operations:
    """Background sharing operations of one server (threads; at most one of a kind per subject at once)."""

    def __init__(self, service: Any):
        self.service = service
        self._lock = threading.Lock()
        self._ops: dict[str, Operation] = {}
        self._ids = itertools.count(1)

    # ------------------------------------------------------------------ bookkeeping
    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return [op.to_dict() for op in self._ops.values()]

    def get(self, op_id: str) -> dict[str, Any]:
        with self._lock:
            op = self._ops.get(op_id)
        if op is None:
            raise NotFoundError(f"no operation {op_id!r} (operations are kept while the server runs)")
        return op.to_dict()

    def _start(self, kind: str, subject: str, work: Callable[[Callable[[str], None]], dict[str, Any]]) -> dict:
        from .handlers import status_for

        with self._lock:
            for op in self._ops.values():
                if op.kind == kind and op.subject == subject and op.status == "running":
                    return {**op.to_dict(), "joined": True}
            op = Operation(id=f"op{next(self._ids)}", kind=kind, subject=subject)
            self._ops[op.id] = op
            finished = [o for o in self._ops.values() if o.status != "running"]
            for old in finished[: max(0, len(self._ops) - MAX_KEPT)]:
                self._ops.pop(old.id, None)

        def say(text: str) -> None:
            op.log.append(redact(str(text))[:2000])

        def run() -> None:
            try:
                op.result = redact_data(work(say))
                op.status = "completed"
            except ContainersError as exc:
                op.error = {"message": redact(str(exc)), "status": status_for(exc), "type": type(exc).__name__}
                op.status = "failed"
            except Exception as exc:
                self.service.log.exception("jupyter-containers: %s of %s failed", kind, subject)
                op.error = {"message": f"internal error: {type(exc).__name__}", "status": 500, "type": "Exception"}
                op.status = "failed"
            finally:
                op.finished = time.time()

        threading.Thread(target=run, name=f"jc-{kind}-{op.id}", daemon=True).start()
        return {**op.to_dict(), "joined": False}

    # ------------------------------------------------------------------ paths
    def _root(self) -> Path:
        return Path(self.service.root_dir).resolve()

    def path(self, raw: Any, key: str, *, suffixes: tuple[str, ...] = (), folder: bool = False) -> Path:
        """A path of a request, relative to the server root and inside it (links resolved)."""
        if not isinstance(raw, str) or not raw.strip() or "\0" in raw:
            raise RequestError(f"{key}: give a path relative to the server root")
        root = self._root()
        path = Path(raw).resolve() if Path(raw).is_absolute() else (root / raw).resolve()
        if path != root and root not in path.parents:
            raise RequestError(f"{key}: {raw!r} is outside the server root")
        if path == root and not folder:
            raise RequestError(f"{key}: {raw!r} is the server root itself; name a file")
        if suffixes and not path.name.endswith(suffixes):
            raise RequestError(f"{key}: {raw!r} must end with {' or '.join(suffixes)}")
        return path

    def shown(self, path: Path) -> str:
        try:
            return str(Path(path).resolve().relative_to(self._root())) or "."
        except ValueError:
            return Path(path).name

    @staticmethod
    def flag(body: dict[str, Any], key: str) -> bool:
        value = body.get(key, False)
        if not isinstance(value, bool):
            raise RequestError(f"{key}: true or false")
        return value

    def _environment(self, name: str) -> Any:
        manager = self.service.get_manager()
        manager.environment(name)  # a 404 naming it, before anything starts
        return manager

    # ------------------------------------------------------------------ operations
    def export(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        from ..share.bundle import export_bundle

        manager = self._environment(name)
        output = self.path(body.get("path") or f"{name}.tar.gz", "path", suffixes=(".tar.gz", ".tgz"))
        with_image = self.flag(body, "with_image")

        def work(say: Callable[[str], None]) -> dict[str, Any]:
            say(f"exporting {name} to {self.shown(output)}" + (" with its image" if with_image else ""))
            result = export_bundle(manager, name, output, with_image=with_image).to_dict()
            return {**result, "path": self.shown(output)}

        return self._start("export", name, work)

    def import_bundle(self, body: dict[str, Any]) -> dict[str, Any]:
        from ..share.bundle import import_bundle

        bundle = self.path(body.get("path"), "path", suffixes=(".tar.gz", ".tgz"))
        if not bundle.is_file():
            raise NotFoundError(f"path: no bundle {self.shown(bundle)!r} in the server root (upload it first)")
        into = self.path(body.get("into") or ".", "into", folder=True)
        if not into.is_dir():
            raise NotFoundError(f"into: no folder {self.shown(into)!r} in the server root")
        force = self.flag(body, "force")
        backend = self.service.get_manager().backend if self._has_spec() else None

        def work(say: Callable[[str], None]) -> dict[str, Any]:
            say(f"checking and importing {self.shown(bundle)} into {self.shown(into)}")
            result = import_bundle(bundle, into, backend=backend or self._bare_backend(), force=force).to_dict()
            self.service.manager = None  # the spec file may be new or changed
            return {**result, "spec_file": self.shown(Path(result["spec_file"]))}

        return self._start("import", self.shown(bundle), work)

    def _has_spec(self) -> bool:
        try:
            self.service.spec_path()
            return True
        except ContainersError:
            return False

    def _bare_backend(self) -> Any:
        from ..manager import ContainersManager

        return ContainersManager(parent=self.service).backend

    def push(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        from ..share.registry import check_registry, push

        manager = self._environment(name)
        registry = check_registry(body["registry"], where="registry") if body.get("registry") else None

        def work(say: Callable[[str], None]) -> dict[str, Any]:
            say(f"pushing {name}")
            return push(manager, name, registry, on_progress=say).to_dict()

        return self._start("push", name, work)

    def pull(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        from ..share.registry import check_registry, pull

        manager = self._environment(name)
        registry = check_registry(body["registry"], where="registry") if body.get("registry") else None

        def work(say: Callable[[str], None]) -> dict[str, Any]:
            say(f"pulling {name}")
            return pull(manager, name, registry, on_progress=say).to_dict()

        return self._start("pull", name, work)

    def binder(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        from ..share.binder import export_binder

        manager = self._environment(name)
        folder = self.path(body.get("path") or "binder", "path", folder=False)
        repo = body.get("repo")
        if repo is not None and (not isinstance(repo, str) or repo.count("/") != 1):
            raise RequestError("repo: OWNER/NAME of a GitHub repository, for the README badge line")
        force = self.flag(body, "force")

        def work(say: Callable[[str], None]) -> dict[str, Any]:
            result = export_binder(manager, name, folder, repo=repo, force=force)
            return {"folder": self.shown(result.folder), "files": list(result.files), "notes": list(result.notes)}

        return self._start("binder", name, work)

    def reproduce(self, body: dict[str, Any]) -> dict[str, Any]:
        from ..share.reproduce import ReproduceOptions, read_sanitizers, reproduce

        notebook = self.service.notebook_path(body.get("path"))
        if not notebook.is_file():
            raise NotFoundError(f"path: no notebook {self.shown(notebook)!r}")
        sanitize = body.get("sanitize") or []
        if not isinstance(sanitize, list):
            raise RequestError("sanitize: a list of sanitizer files (nbval's format) relative to the server root")
        sanitizers = [self.path(p, "sanitize") for p in sanitize]
        read_sanitizers(sanitizers)  # a bad file is a 400 now, not a failed operation later
        tolerances = {}
        for key, default in (("rtol", 1e-9), ("atol", 0.0)):
            value = body.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e6:
                raise RequestError(f"{key}: a number from 0, such as {default:g}")
            tolerances[key] = float(value)
        stem = notebook.name[: -len(".ipynb")]
        report_path = self.path(
            body.get("report") or str(notebook.with_name(f"{stem}.reproduce.html")),
            "report",
            suffixes=(".html", ".json"),
        )
        options = ReproduceOptions(sanitizers=tuple(sanitizers), rtol=tolerances["rtol"], atol=tolerances["atol"])
        config = self.service.get_manager().config if self._has_spec() else self.service.config

        def work(say: Callable[[str], None]) -> dict[str, Any]:
            report = reproduce(notebook, options, config=config, log=say)
            report.write(report_path)
            return {**report.to_dict(), "notebook": self.shown(notebook), "report": self.shown(report_path)}

        return self._start("reproduce", self.shown(notebook), work)
