"""The run record an output notebook carries: which environment, spec, lock, image and limits it ran with.

It lives in the notebook's own metadata, so the notebook alone says how to reproduce it:
``metadata.jupyter_containers`` is ours, and ``metadata.papermill`` is filled in as papermill fills it, so
tools that read papermill's record (parameters, start and end times, whether it failed) keep working.
The runner starts the record before the first cell and finishes it at the end; sharing and reproduce code
read it back with :meth:`RunRecord.read`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..redact import redact_data

RECORD_KEY = "jupyter_containers"
PAPERMILL_KEY = "papermill"

RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
TIMED_OUT = "timed out"
CANCELLED = "cancelled"


class RunRecord:
    """The provenance record of one run, read from and written to a notebook's metadata.

    The notebook holds the data (its metadata converts what is assigned to it), so this wrapper always
    reads through to it: what is written out is what the record says.
    """

    def __init__(self, nb: Any):
        self.nb = nb

    @classmethod
    def read(cls, nb: Any) -> RunRecord | None:
        """The record an output notebook carries, or None for a notebook that no run wrote."""
        return cls(nb) if RECORD_KEY in (nb.get("metadata") or {}) else None

    @classmethod
    def start(
        cls,
        nb: Any,
        *,
        environment: str,
        spec: Mapping[str, Any],
        spec_file: str | Path,
        lock: Mapping[str, Any] | None,
        image: str | None,
        image_id: str | None,
        resources: Mapping[str, Any],
        parameters: Mapping[str, Any],
        input_path: str | Path,
        output_path: str | Path,
        started: datetime | None = None,
    ) -> RunRecord:
        """Write the record of a run that starts now (status "running"), replacing one a previous run left.

        ``spec`` is the environment's spec as a table, ``lock`` its lock entry (None: not locked),
        ``resources`` the effective limits of this run.
        """
        when = _iso(started or datetime.now(timezone.utc))
        nb.metadata[RECORD_KEY] = {
            "environment": environment,
            "spec": redact_data(dict(spec)),
            "spec_file": str(spec_file),
            "lock": redact_data(dict(lock)) if lock is not None else None,
            "image": image,
            "image_id": image_id,
            "resources": dict(resources),
            "parameters": dict(parameters),
            "started": when,
            "finished": None,
            "status": RUNNING,
        }
        nb.metadata[PAPERMILL_KEY] = {
            "parameters": dict(parameters),
            "input_path": str(input_path),
            "output_path": str(output_path),
            "environment_variables": {},
            "start_time": when,
            "end_time": None,
            "duration": None,
            "exception": None,
        }
        return cls(nb)

    @property
    def data(self) -> Any:
        """The ``metadata.jupyter_containers`` table itself (a NotebookNode: keys read as attributes too)."""
        return self.nb.metadata[RECORD_KEY]

    @property
    def environment(self) -> str:
        return self.data["environment"]

    @property
    def status(self) -> str:
        return self.data["status"]

    @property
    def image(self) -> str | None:
        return self.data.get("image")

    @property
    def image_id(self) -> str | None:
        return self.data.get("image_id")

    @property
    def parameters(self) -> dict[str, Any]:
        return dict(self.data.get("parameters") or {})

    def set_image(self, image: str, image_id: str | None) -> None:
        """The image the kernel's container actually runs (it may differ from the one the build named)."""
        self.data["image"] = image
        self.data["image_id"] = image_id

    def set_cell(self, index: int | None) -> None:
        """The cell now running (``cell``), so that a server that restarts mid-run knows where to go on."""
        self.data["cell"] = index

    def finish(
        self,
        status: str,
        *,
        seconds: float,
        error: Mapping[str, Any] | None = None,
        finished: datetime | None = None,
    ) -> None:
        """Close the record: how the run ended, when, after how long, and its error if any."""
        when = _iso(finished or datetime.now(timezone.utc))
        self.data.pop("cell", None)
        self.data.update({"finished": when, "status": status, "seconds": round(seconds, 3)})
        if error is not None:
            self.data["error"] = dict(error)
        papermill = self.nb.metadata.get(PAPERMILL_KEY)
        if papermill is not None:
            papermill.update({"end_time": when, "duration": round(seconds, 3), "exception": status != COMPLETED})


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
