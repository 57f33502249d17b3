"""Builds running in the background, shared by everyone who asks for the same environment.

The server starts builds from requests and must answer at once; the build itself blocks (docker SDK), so
it runs in a worker thread. Requests for an environment that is already building join that build, and
readers follow its events by index, which is all a streaming endpoint or a poller needs.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..backends.base import BuildEvent


@dataclass
class Build:
    id: str
    environment: str
    spec_file: str
    #: The ``[targets.NAME]`` it builds on (None: the configured engine).
    target: str | None = None
    status: str = "building"  # building | built | failed
    started: float = field(default_factory=time.time)
    finished: float | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    steps_done: int = 0
    steps_total: int | None = None
    changed: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "environment": self.environment,
            "spec_file": self.spec_file,
            "target": self.target,
            "status": self.status,
            "started": self.started,
            "finished": self.finished,
            "progress": {"done": self.steps_done, "total": self.steps_total},
            "result": self.result,
            "error": self.error,
            "events": len(self.events),
            "summary": self.summary(),
        }

    def summary(self) -> dict[str, Any]:
        """What the sidebar shows of a build once it ended: steps, how many were cached, seconds, image size."""
        done = [e for e in self.events if e["kind"] == "done"]
        return {
            "steps": len(done),
            "cached": sum(1 for e in done if e["cached"]),
            "seconds": round((self.finished or time.time()) - self.started, 1),
            "image_size": (self.result or {}).get("image_size"),
        }

    def add(self, event: BuildEvent) -> None:
        with self.changed:
            if event.kind == "done":
                self.steps_done += 1
            if event.total:
                self.steps_total = event.total
            self.events.append(
                {
                    "time": time.time(),
                    "kind": event.kind,
                    "step": event.title if event.kind in ("step", "done") else "",
                    "text": event.text,
                    "index": event.index,
                    "total": event.total,
                    "cached": event.cached,
                    "stream": event.stream,
                }
            )
            self.changed.notify_all()

    def finish(self, status: str, *, result: dict | None = None, error: dict | None = None) -> None:
        with self.changed:
            self.status, self.result, self.error, self.finished = status, result, error, time.time()
            self.changed.notify_all()

    def wait_for_events(self, since: int, timeout: float) -> list[dict[str, Any]]:
        """Events after index ``since``, waiting up to ``timeout`` for one (blocking: call in a thread)."""
        with self.changed:
            if len(self.events) <= since and self.status == "building":
                self.changed.wait(timeout)
            return self.events[since:]


class BuildTracker:
    """All builds this process started, newest kept per environment; one running build per environment."""

    def __init__(
        self,
        run_build: Callable[[str, str, Callable[[BuildEvent], None], str | None], dict[str, Any]],
        keep: int = 50,
    ):
        self._run_build = run_build
        self._lock = threading.Lock()
        self._builds: dict[str, Build] = {}
        self._running: dict[tuple[str, str, str | None], Build] = {}
        self.keep = keep

    def start(self, spec_file: str, environment: str, target: str | None = None) -> tuple[Build, bool]:
        """The running build of that environment on that target (joined) or a new one; the bool says whether it
        is new (a build of the same environment on another engine is another build)."""
        key = (spec_file, environment, target)
        with self._lock:
            running = self._running.get(key)
            if running is not None:
                return running, False
            build = Build(id=uuid.uuid4().hex[:12], environment=environment, spec_file=spec_file, target=target)
            self._builds[build.id] = build
            self._running[key] = build
            self._trim()
        threading.Thread(target=self._work, args=(build,), name=f"build-{environment}", daemon=True).start()
        return build, True

    def get(self, build_id: str) -> Build | None:
        return self._builds.get(build_id)

    def running(self, spec_file: str, environment: str, target: str | None = None) -> Build | None:
        return self._running.get((spec_file, environment, target))

    def latest(self, spec_file: str, environment: str, target: str | None = None) -> Build | None:
        key = (spec_file, environment, target)
        candidates = [b for b in self._builds.values() if (b.spec_file, b.environment, b.target) == key]
        return max(candidates, key=lambda b: b.started) if candidates else None

    def all(self) -> list[Build]:
        return sorted(self._builds.values(), key=lambda b: b.started, reverse=True)

    def _work(self, build: Build) -> None:
        from ..errors import BuildError, ContainersError

        try:
            result = self._run_build(build.spec_file, build.environment, build.add, build.target)
            build.finish("built", result=result)
        except BuildError as exc:
            build.finish("failed", error={"message": str(exc), "step": exc.step, "log_tail": exc.log_tail})
        except ContainersError as exc:
            build.finish("failed", error={"message": str(exc)})
        except Exception as exc:  # noqa: BLE001 - a build thread must always finish its record
            build.finish("failed", error={"message": f"{exc.__class__.__name__}: {exc}"})
        finally:
            with self._lock:
                self._running.pop((build.spec_file, build.environment, build.target), None)

    def _trim(self) -> None:
        finished = sorted((b for b in self._builds.values() if b.status != "building"), key=lambda b: b.started)
        for old in finished[: max(0, len(self._builds) - self.keep)]:
            self._builds.pop(old.id, None)
