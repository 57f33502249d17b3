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
    target TEXT
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created);
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class JobStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            db.executescript(SCHEMA)
            columns = {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}
            if "target" not in columns:  # a database of an earlier version
                db.execute("ALTER TABLE jobs ADD COLUMN target TEXT")

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
    ) -> Job:
        job = Job(
            id=uuid.uuid4().hex[:12],
            notebook=notebook,
            environment=environment,
            spec_file=spec_file,
            parameters=parameters,
            resources=resources,
            target=target,
        )
        with closing(self._connect()) as db, db:
            db.execute(
                "INSERT INTO jobs (id, notebook, environment, spec_file, parameters, resources, status, created, "
                "target) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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

    def list(self, limit: int = 200) -> builtins.list[Job]:
        with closing(self._connect()) as db:
            rows = db.execute("SELECT * FROM jobs ORDER BY created DESC LIMIT ?", (limit,)).fetchall()
        return [_job(row) for row in rows]

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
