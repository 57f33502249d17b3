"""Notebook jobs in an embedded SQLite database, so a server restart loses none of them.

One row per job; JSON columns for parameters, resources and errors. Every call opens its own connection
(SQLite connections are not shared across threads) in WAL mode, so the event loop's readers never wait
on a job thread's writes.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import time
import uuid
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ACTIVE = ("queued", "running")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    notebook TEXT NOT NULL,
    environment TEXT NOT NULL,
    spec_file TEXT NOT NULL,
    parameters TEXT NOT NULL DEFAULT '{}',
    resources TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    output_path TEXT,
    error TEXT,
    target TEXT,
    sweep TEXT
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created);
"""

#: A parameter sweep's own record (its jobs are rows of ``jobs`` with its id in ``sweep``): which parameters
#: were swept, in order (the summary table's columns), the rule's bounds, and how many of its jobs ran at once.
SWEEP_SCHEMA = """
CREATE TABLE IF NOT EXISTS sweeps (
    id TEXT PRIMARY KEY,
    notebook TEXT NOT NULL,
    environment TEXT NOT NULL,
    target TEXT,
    axes TEXT NOT NULL,
    options TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL,
    peak INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_sweep ON jobs (sweep);
"""


@dataclass
class Job:
    id: str
    notebook: str
    environment: str
    spec_file: str
    parameters: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    status: str = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    output_path: str | None = None
    error: dict[str, Any] | None = None
    target: str | None = None
    sweep: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SweepRecord:
    """A sweep: ``axes`` are the swept parameters' names in order; ``options`` the rule's bounds."""

    id: str
    notebook: str
    environment: str
    axes: list[str]
    options: dict[str, Any] = field(default_factory=dict)
    target: str | None = None
    created: float = field(default_factory=time.time)
    peak: int = 0


class JobStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            db.executescript(SCHEMA)
            columns = {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}
            if "target" not in columns:  # a database of an earlier version
                db.execute("ALTER TABLE jobs ADD COLUMN target TEXT")
            if "sweep" not in columns:
                db.execute("ALTER TABLE jobs ADD COLUMN sweep TEXT")
            db.executescript(SWEEP_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def create(
        self,
        notebook: str,
        environment: str,
        spec_file: str,
        parameters: dict,
        resources: dict,
        target: str | None = None,
        sweep: str | None = None,
        output_path: str | None = None,
    ) -> Job:
        job = Job(
            id=uuid.uuid4().hex[:12],
            notebook=notebook,
            environment=environment,
            spec_file=spec_file,
            parameters=parameters,
            resources=resources,
            target=target,
            sweep=sweep,
            output_path=output_path,
        )
        with closing(self._connect()) as db, db:
            db.execute(
                "INSERT INTO jobs (id, notebook, environment, spec_file, parameters, resources, status, created, "
                "target, sweep, output_path) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job.id,
                    notebook,
                    environment,
                    spec_file,
                    json.dumps(parameters),
                    json.dumps(resources),
                    job.status,
                    job.created,
                    target,
                    sweep,
                    output_path,
                ),
            )
        return job

    def update(self, job_id: str, **fields: Any) -> None:
        if not fields:
            return
        columns = ", ".join(f"{name} = ?" for name in fields)
        values = [json.dumps(v) if name == "error" and v is not None else v for name, v in fields.items()]
        with closing(self._connect()) as db, db:
            db.execute(f"UPDATE jobs SET {columns} WHERE id = ?", (*values, job_id))

    def get(self, job_id: str) -> Job | None:
        with closing(self._connect()) as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row) if row else None

    def list(self, limit: int = 200, *, sweep: str | None = None) -> builtins.list[Job]:
        """The newest ``limit`` jobs, newest first; with ``sweep``, every job of that sweep in its order."""
        with closing(self._connect()) as db:
            if sweep is not None:
                rows = db.execute("SELECT * FROM jobs WHERE sweep = ? ORDER BY rowid", (sweep,)).fetchall()
            else:
                rows = db.execute("SELECT * FROM jobs ORDER BY created DESC LIMIT ?", (limit,)).fetchall()
        return [_job(row) for row in rows]

    # ------------------------------------------------------------------ sweeps
    def create_sweep(self, record: SweepRecord) -> SweepRecord:
        with closing(self._connect()) as db, db:
            db.execute(
                "INSERT INTO sweeps (id, notebook, environment, target, axes, options, created, peak) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    record.notebook,
                    record.environment,
                    record.target,
                    json.dumps(record.axes),
                    json.dumps(record.options),
                    record.created,
                    record.peak,
                ),
            )
        return record

    def update_sweep(self, sweep_id: str, *, peak: int) -> None:
        with closing(self._connect()) as db, db:
            db.execute("UPDATE sweeps SET peak = MAX(peak, ?) WHERE id = ?", (peak, sweep_id))

    def get_sweep(self, sweep_id: str) -> SweepRecord | None:
        with closing(self._connect()) as db:
            row = db.execute("SELECT * FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()
        if row is None:
            return None
        data = dict(row)
        data["axes"] = json.loads(data["axes"])
        data["options"] = json.loads(data["options"] or "{}")
        return SweepRecord(**data)

    def mark_interrupted(self) -> builtins.list[str]:
        """Jobs a previous server left queued or running: they cannot be resumed, so say what happened."""
        with closing(self._connect()) as db, db:
            rows = db.execute("SELECT id FROM jobs WHERE status IN (?, ?)", ACTIVE).fetchall()
            error = json.dumps(
                {"message": "the server stopped while this job was running; its partial output was kept"}
            )
            db.execute(
                "UPDATE jobs SET status = 'interrupted', finished = ?, error = ? WHERE status IN (?, ?)",
                (time.time(), error, *ACTIVE),
            )
        return [row["id"] for row in rows]


def _job(row: sqlite3.Row) -> Job:
    data = dict(row)
    data["parameters"] = json.loads(data["parameters"] or "{}")
    data["resources"] = json.loads(data["resources"] or "{}")
    data["error"] = json.loads(data["error"]) if data["error"] else None
    return Job(**data)
