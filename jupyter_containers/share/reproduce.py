"""``reproduce``: rebuild a notebook's recorded environment, run it again, and say truthfully what differs.

1. The record (``metadata.jupyter_containers``) gives the spec, the lock, the parameters and the limits. The
   environment is recreated from it alone in a private folder: the image is used as is when the engine has the
   recorded one, otherwise built with ``--locked`` and probed; a different set of packages (or Python, or apt
   versions) means "could not rebuild the same environment" and nothing is run.
2. The notebook runs again (``execute``) in its own folder with the recorded parameters and resources.
3. Both notebooks are normalized the same way and compared with nbdime (``diff_notebooks`` with
   ``set_notebook_diff_targets``: outputs only): nbval sanitizer files (``[section]`` / ``regex:`` /
   ``replace:``) rewrite text on both sides; numbers in text and in JSON data count as equal within
   ``rtol``/``atol``; images compare by their decoded bytes; errors by type and message (tracebacks hold host
   paths and colours); execution order separately.

Exit status: 0 reproduced, 1 the same environment gave different outputs, 3 the same environment could not be
rebuilt.
"""

from __future__ import annotations

import base64
import configparser
import copy
import html
import io
import json
import math
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BuildError, ContainersError, NotFoundError, RequestError
from ..jobs.provenance import RECORD_KEY
from .notebook import environment_from_record, lock_from_record, read_notebook, recorded

REPRODUCED = "reproduced"
OUTPUTS_DIFFER = "outputs differ"
ENVIRONMENT_DIFFERS = "environment differs"
EXIT_CODES = {REPRODUCED: 0, OUTPUTS_DIFFER: 1, ENVIRONMENT_DIFFERS: 3}
_NUMBER = re.compile(r"([-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)")
_TEXT_TYPES = ("text/plain", "text/html", "text/markdown", "text/latex", "image/svg+xml")


@dataclass(frozen=True)
class Sanitizer:
    name: str
    regex: re.Pattern[str]
    replace: str


@dataclass(frozen=True)
class ReproduceOptions:
    sanitizers: Sequence[Path] = ()
    rtol: float = 1e-9
    atol: float = 0.0
    run_output: Path | None = None
    timeout: float | None = None
    #: The [targets.NAME] (of the workspace's spec) the notebook was rebuilt and re-run on, for the report.
    target: str | None = None


@dataclass
class CellDifference:
    index: int
    execution_count: int | None
    what: list[str] = field(default_factory=list)
    recorded: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"cell": self.index, "execution_count": self.execution_count, "what": self.what}


@dataclass
class ReproduceReport:
    notebook: Path
    environment: str
    status: str
    environment_notes: list[str] = field(default_factory=list)
    cells: list[CellDifference] = field(default_factory=list)
    image: str | None = None
    image_id: str | None = None
    run_status: str | None = None
    seconds: float = 0.0
    diff_text: str = ""
    target: str | None = None
    #: "execute" (the notebook ran as a whole in its environment) or "local kernel" (its %%container cells ran
    #: in the recorded environments).
    mode: str = "execute"

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    def to_dict(self) -> dict[str, Any]:
        return {
            "notebook": str(self.notebook),
            "environment": self.environment,
            "status": self.status,
            "exit_code": self.exit_code,
            "environment_notes": list(self.environment_notes),
            "cells": [c.to_dict() for c in self.cells],
            "image": self.image,
            "image_id": self.image_id,
            "run_status": self.run_status,
            "seconds": round(self.seconds, 3),
            "target": self.target,
            "mode": self.mode,
        }

    def text(self) -> str:
        lines = [f"{self.notebook}: {self.status} (environment {self.environment!r}, {self.seconds:.1f}s)"]
        lines += [f"  environment: {note}" for note in self.environment_notes]
        for cell in self.cells:
            lines.append(f"  cell {cell.index} [{cell.execution_count}]: " + "; ".join(cell.what))
        if self.diff_text:
            lines += ["", self.diff_text.rstrip()]
        return "\n".join(lines)

    def html(self) -> str:
        esc = html.escape
        verdict = {"reproduced": "#1a7f37", "outputs differ": "#b35900", "environment differs": "#b31d28"}
        rows = []
        for cell in self.cells:
            rows.append(
                f"<tr><td>{cell.index}</td><td>{esc('; '.join(cell.what))}</td>"
                f"<td><pre>{esc(chr(10).join(cell.recorded))[:20000]}</pre></td>"
                f"<td><pre>{esc(chr(10).join(cell.new))[:20000]}</pre></td></tr>"
            )
        notes = "".join(f"<li>{esc(n)}</li>" for n in self.environment_notes)
        table = (
            "<table><tr><th>cell</th><th>what differs</th><th>recorded</th><th>now</th></tr>"
            + "".join(rows)
            + "</table>"
            if rows
            else "<p>Every output matches.</p>"
        )
        return (
            "<!DOCTYPE html><html><head><meta charset='utf-8'><title>reproduce "
            f"{esc(self.notebook.name)}</title><style>body{{font-family:sans-serif;margin:2em}}"
            "td,th{border:1px solid #ccc;padding:4px;vertical-align:top;text-align:left}"
            "table{border-collapse:collapse}pre{white-space:pre-wrap;margin:0;max-width:40em}</style></head><body>"
            f"<h1>{esc(self.notebook.name)}: <span style='color:{verdict[self.status]}'>{esc(self.status)}</span></h1>"
            f"<p>environment <code>{esc(self.environment)}</code>, image <code>{esc(self.image or '?')}</code> "
            f"(<code>{esc((self.image_id or '?')[:19])}</code>), run {esc(self.run_status or 'not run')}, "
            f"{self.seconds:.1f}s</p>"
            + (f"<h2>Environment</h2><ul>{notes}</ul>" if notes else "")
            + f"<h2>Cells</h2>{table}</body></html>"
        )

    def write(self, path: Path) -> None:
        from ..images.lock import atomic_write

        text = json.dumps(self.to_dict(), indent=2) if path.suffix == ".json" else self.html()
        atomic_write(path, text)


# ------------------------------------------------------------------------------------------- sanitizers
def read_sanitizers(paths: Sequence[Path]) -> list[Sanitizer]:
    """nbval's sanitizer file format: sections, each with ``regex:`` and ``replace:``."""
    found = []
    for path in paths:
        parser = configparser.ConfigParser(interpolation=None)
        try:
            with open(path, encoding="utf-8") as fh:
                parser.read_file(fh)
        except (OSError, configparser.Error) as exc:
            raise RequestError(f"sanitizer file {path}: {str(exc)[:300]}") from None
        for section in parser.sections():
            if "regex" not in parser[section]:
                raise RequestError(f"sanitizer file {path}: [{section}] has no 'regex:' line")
            try:
                pattern = re.compile(parser[section]["regex"])
            except re.error as exc:
                raise RequestError(f"sanitizer file {path}: [{section}] regex: {exc}") from None
            found.append(Sanitizer(section, pattern, parser[section].get("replace", "")))
    return found


# ------------------------------------------------------------------------------------------- normalizing
def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _normalize(nb: Any, sanitizers: Sequence[Sanitizer]) -> Any:
    """A copy holding only what is compared: outputs sanitized, errors without tracebacks, no timing metadata."""
    out = copy.deepcopy(nb)
    for cell in out.cells:
        if cell.get("cell_type") != "code":
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                output["traceback"] = []
                output["evalue"] = _sanitize(str(output.get("evalue", "")), sanitizers)
            if "text" in output:
                output["text"] = _sanitize(_text(output["text"]), sanitizers)
            data = output.get("data") or {}
            for mime, value in list(data.items()):
                if mime.startswith("image/") and mime != "image/svg+xml":
                    data[mime] = _text(value).replace("\n", "")
                elif isinstance(value, str | list) and not (mime == "application/json" or mime.endswith("+json")):
                    data[mime] = _sanitize(_text(value), sanitizers)
    return out


def _sanitize(text: str, sanitizers: Sequence[Sanitizer]) -> str:
    for sanitizer in sanitizers:
        text = sanitizer.regex.sub(sanitizer.replace, text)
    return text


def _close_text(a: str, b: str, rtol: float, atol: float) -> bool:
    pa, pb = _NUMBER.split(a), _NUMBER.split(b)
    if len(pa) != len(pb):
        return False
    for i, (x, y) in enumerate(zip(pa, pb, strict=True)):
        if i % 2 == 0:
            if x != y:
                return False
        elif x != y and not math.isclose(float(x), float(y), rel_tol=rtol, abs_tol=atol):
            return False
    return True


def _close_data(a: Any, b: Any, rtol: float, atol: float) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=rtol, abs_tol=atol)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close_data(a[k], b[k], rtol, atol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close_data(x, y, rtol, atol) for x, y in zip(a, b, strict=True))
    return a == b


def _apply_tolerance(old: Any, new: Any, rtol: float, atol: float) -> None:
    """Where a new output equals the recorded one within the tolerance (numbers) or by content (images), give it
    the recorded value, so that nbdime reports only real differences."""
    for old_cell, new_cell in zip(old.cells, new.cells, strict=False):
        for a, b in zip(old_cell.get("outputs", []), new_cell.get("outputs", []), strict=False):
            if "text" in a and "text" in b and _close_text(a["text"], b["text"], rtol, atol):
                b["text"] = a["text"]
            if a.get("output_type") == "error" and b.get("output_type") == "error":
                if a.get("ename") == b.get("ename") and _close_text(a["evalue"], b["evalue"], rtol, atol):
                    b["evalue"] = a["evalue"]
            da, db = a.get("data") or {}, b.get("data") or {}
            for mime in set(da) & set(db):
                va, vb = da[mime], db[mime]
                if mime.startswith("image/") and mime != "image/svg+xml":
                    if _decoded(va) == _decoded(vb):
                        db[mime] = va
                elif isinstance(va, str) and isinstance(vb, str):
                    if _close_text(va, vb, rtol, atol):
                        db[mime] = va
                elif _close_data(va, vb, rtol, atol):
                    db[mime] = va


def _decoded(value: Any) -> bytes | None:
    try:
        return base64.b64decode(_text(value), validate=False)
    except (ValueError, TypeError):
        return None


def _describe_output(output: Any) -> str:
    kind = output.get("output_type")
    if kind == "stream":
        return f"[{output.get('name')}] {_text(output.get('text', ''))}"
    if kind == "error":
        return f"[error] {output.get('ename')}: {output.get('evalue')}"
    data = output.get("data") or {}
    if "text/plain" in data:
        return f"[{kind}] {_text(data['text/plain'])}"
    return f"[{kind}] " + ", ".join(sorted(data))


def compare_notebooks(
    recorded_nb: Any, new_nb: Any, *, sanitizers: Sequence[Sanitizer] = (), rtol: float = 1e-9, atol: float = 0.0
) -> tuple[list[CellDifference], str]:
    """The cells whose outputs (or execution order) differ, and nbdime's terminal rendering of the diff."""
    from nbdime import diff_notebooks
    from nbdime.diffing.notebooks import reset_notebook_differ, set_notebook_diff_targets
    from nbdime.prettyprint import PrettyPrintConfig, pretty_print_diff

    old = _normalize(recorded_nb, sanitizers)
    new = _normalize(new_nb, sanitizers)
    _apply_tolerance(old, new, rtol, atol)
    for old_cell, new_cell in zip(old.cells, new.cells, strict=False):
        if "id" in old_cell:  # cell ids are not outputs (a copy of the notebook may have new ones)
            new_cell["id"] = old_cell["id"]
    set_notebook_diff_targets(
        sources=False, outputs=True, attachments=False, metadata=False, identifier=False, details=False
    )
    try:
        diff = diff_notebooks(old, new)
    finally:
        reset_notebook_differ()
    cells: dict[int, CellDifference] = {}

    def cell(index: int) -> CellDifference:
        if index not in cells:
            source = old.cells[index] if index < len(old.cells) else new.cells[index]
            cells[index] = CellDifference(index, source.get("execution_count"))
        return cells[index]

    for entry in diff:
        if entry["key"] != "cells":
            continue
        for op in entry.get("diff", []):
            index = int(op["key"])
            if op["op"] == "patch":
                for part in op.get("diff", []):
                    difference = cell(index)
                    difference.what.append("outputs differ" if part["key"] == "outputs" else f"{part['key']} differs")
            else:
                cell(index).what.append("cells were added or removed")
    old_order = [c.get("execution_count") for c in old.cells if c.get("cell_type") == "code"]
    new_order = [c.get("execution_count") for c in new.cells if c.get("cell_type") == "code"]
    if _order(old_order) != _order(new_order):
        for index, (a, b) in enumerate(zip(old.cells, new.cells, strict=False)):
            if a.get("cell_type") == "code" and a.get("execution_count") != b.get("execution_count"):
                cell(index).what.append(
                    f"execution order: recorded [{a.get('execution_count')}], now [{b.get('execution_count')}]"
                )
    for index, difference in cells.items():
        if index < len(old.cells):
            difference.recorded = [_describe_output(o) for o in old.cells[index].get("outputs", [])]
        if index < len(new.cells):
            difference.new = [_describe_output(o) for o in new.cells[index].get("outputs", [])]
    text = ""
    if diff:
        buffer = io.StringIO()
        pretty_print_diff(old, diff, "notebook", PrettyPrintConfig(out=buffer, use_color=False, use_git=False))
        text = buffer.getvalue()
    return [cells[i] for i in sorted(cells)], text


def _order(counts: list[Any]) -> list[int]:
    """Relative order of the executed cells (a run that started at another count is in the same order)."""
    present = [c for c in counts if isinstance(c, int)]
    return sorted(range(len(present)), key=lambda i: present[i])


# ------------------------------------------------------------------------------------------- reproduce
def reproduce(
    notebook: Path,
    options: ReproduceOptions | None = None,
    *,
    config: Any = None,
    log: Callable[[str], None] = print,
    on_build_event: Callable[[Any], None] | None = None,
    backend: Any = None,
) -> ReproduceReport:
    """Rebuild, re-run and compare ``notebook`` (see the module's docstring).

    ``backend``: the engine to rebuild and re-run on (``reproduce --target``: that target's backend); None:
    the configured one. A notebook without ``execute``'s record but with records of the environments its
    ``%%container`` cells used (share/metadata.py) is re-run in a local kernel, its cells in those environments.

    Raises:
        NotFoundError: no such notebook; RequestError: it carries no record, or a sanitizer file is invalid.
    """
    from ..jobs.runner import ExecuteRequest
    from ..manager import ContainersManager
    from ..spec.parse import parse_resources

    options = options or ReproduceOptions()
    started = time.perf_counter()
    notebook = Path(notebook).resolve()
    nb = read_notebook(notebook)
    from .metadata import notebook_records

    if not (nb.metadata.get(RECORD_KEY) or {}).get("spec") and notebook_records(nb.metadata):
        return _reproduce_local(notebook, nb, options, config, log, on_build_event, backend, started)
    record = recorded(nb, notebook)
    sanitizers = read_sanitizers(options.sanitizers)
    lock = lock_from_record(record, notebook)
    with tempfile.TemporaryDirectory(prefix="jc-reproduce-") as tmp:
        folder = Path(tmp)
        spec_file = folder / "containers.toml"
        notes: list[str] = []
        env = environment_from_record(record, spec_file, None, notes)
        from dataclasses import replace

        from ..images.lock import write_lock_entry
        from ..spec.writer import add_environment_to_file

        add_environment_to_file(spec_file, replace(env, source=spec_file))
        if lock is not None:
            write_lock_entry(folder / "containers.lock", env.name, lock)
        manager = ContainersManager(
            spec_path=spec_file,
            config=config,
            workspace=str(notebook.parent),
            **({"backend": backend} if backend else {}),
        )
        report = ReproduceReport(notebook, env.name, REPRODUCED, environment_notes=notes, target=options.target)
        try:
            image, image_id, env_notes = _rebuild(manager, env.name, lock, record, on_build_event)
        except (BuildError, NotFoundError) as exc:
            report.status = ENVIRONMENT_DIFFERS
            report.environment_notes.append(f"could not rebuild the environment: {exc}")
            report.seconds = time.perf_counter() - started
            return report
        report.image, report.image_id = image, image_id
        if env_notes:
            report.status = ENVIRONMENT_DIFFERS
            report.environment_notes.extend(env_notes)
            report.seconds = time.perf_counter() - started
            return report
        resources = None
        if record.get("resources"):
            try:
                resources = parse_resources(dict(record["resources"]))
            except ContainersError as exc:
                raise RequestError(f"{notebook}: the recorded resources are invalid: {exc}") from None
        output = options.run_output or folder / "rerun.ipynb"
        request = ExecuteRequest(
            notebook=notebook,
            environment=env.name,
            output_path=output,
            parameters=dict(record.get("parameters") or {}),
            resources=resources,
            timeout=options.timeout,
        )
        result = manager.execute(request, log=log, on_build_event=on_build_event)
        report.run_status = result.status
        new_nb = read_notebook(Path(result.output_path))
        report.cells, report.diff_text = compare_notebooks(
            nb, new_nb, sanitizers=sanitizers, rtol=options.rtol, atol=options.atol
        )
        recorded_status = record.get("status")
        if recorded_status and recorded_status != result.status:
            report.environment_notes.append(f"the recorded run {recorded_status}, this one {result.status}")
            if not report.cells:
                report.cells.append(
                    CellDifference(-1, None, [f"run status: recorded {recorded_status}, now {result.status}"])
                )
        if report.cells:
            report.status = OUTPUTS_DIFFER
        report.seconds = time.perf_counter() - started
        return report


def _rebuild(
    manager: Any, name: str, lock: Any, record: dict[str, Any], on_build_event: Any
) -> tuple[str, str, list[str]]:
    """The image to re-run in and what differs in its environment from the record (empty: the same)."""
    builder = manager.builder
    env = manager.environment(name)
    recorded_id = record.get("image_id")
    plan = builder.plan(env, on_event=on_build_event)
    current = manager.backend.image_id(plan.tag)
    if current is not None and (lock is None or current == lock.image_id or current == recorded_id):
        return plan.tag, current, []
    if lock is None:
        result = builder.build(env, on_event=on_build_event)
        return result.image, result.image_id, ["the record has no lock: the environment was built from its spec"]
    # Not here as recorded: build exactly the locked versions, then see what the image really holds.
    locked_plan = builder.plan(env, locked=True, on_event=on_build_event)
    result = builder.build(env, locked=True, on_event=on_build_event)
    probed = builder.write_lock(env, locked_plan, result.image_id)
    notes = []
    if probed.python != lock.python:
        notes.append(f"Python {probed.python}, recorded {lock.python}")
    missing = sorted(set(lock.packages) - set(probed.packages))
    extra = sorted(set(probed.packages) - set(lock.packages))
    if missing or extra:
        notes.append(
            "packages differ: " + ", ".join([*(f"-{p}" for p in missing[:10]), *(f"+{p}" for p in extra[:10])])
        )
    if sorted(probed.apt) != sorted(lock.apt):
        notes.append(f"apt packages differ: recorded {', '.join(lock.apt)}, now {', '.join(probed.apt)}")
    if probed.base_image_id != lock.base_image_id:
        manager.log.info("base image %s differs from the recorded %s", probed.base_image_id, lock.base_image_id)
    return result.image, result.image_id, notes


def _reproduce_local(
    notebook: Path,
    nb: Any,
    options: ReproduceOptions,
    config: Any,
    log: Callable[[str], None],
    on_build_event: Any,
    backend: Any,
    started: float,
) -> ReproduceReport:
    """A notebook of a local kernel whose ``%%container`` cells recorded their environments: recreate each from
    its record, then run the notebook in a local kernel whose cells use them (JUPYTER_CONTAINERS_SPEC_FILE)."""
    from dataclasses import replace

    from ..images.lock import write_lock_entry
    from ..manager import ContainersManager
    from ..spec.writer import add_environment_to_file
    from .metadata import notebook_records

    if backend is not None:
        raise RequestError(
            f"{notebook.name} runs in a local kernel (its %%container cells recorded their environments): reproduce "
            "it without --target, or set the target in its %%container cells (--target NAME)"
        )
    sanitizers = read_sanitizers(options.sanitizers)
    records = notebook_records(nb.metadata)
    with tempfile.TemporaryDirectory(prefix="jc-reproduce-") as tmp:
        folder = Path(tmp)
        folder.chmod(0o755)  # the container user reads the spec's folder
        spec_file = folder / "containers.toml"
        notes: list[str] = []
        locks = {}
        for name, record in records.items():
            env = environment_from_record(record, spec_file, name, notes)
            add_environment_to_file(spec_file, replace(env, source=spec_file))
            lock = locks[name] = lock_from_record(record, notebook)
            if lock is not None:
                write_lock_entry(folder / "containers.lock", name, lock)
        _write_config(folder, config)
        manager = ContainersManager(spec_path=spec_file, config=config, workspace=str(notebook.parent))
        report = ReproduceReport(notebook, ", ".join(records), REPRODUCED, environment_notes=notes, mode="local kernel")
        for name, record in records.items():
            try:
                image, image_id, env_notes = _rebuild(manager, name, locks[name], record, on_build_event)
            except (BuildError, NotFoundError) as exc:
                env_notes, image, image_id = [f"could not rebuild the environment: {exc}"], None, None
            report.environment_notes.extend(f"{name}: {note}" for note in env_notes)
            if env_notes:
                report.status = ENVIRONMENT_DIFFERS
            report.image, report.image_id = image, image_id
        if report.status == ENVIRONMENT_DIFFERS:
            report.seconds = time.perf_counter() - started
            return report
        log(f"re-running {notebook.name} in a local kernel, its %%container cells in {report.environment}")
        new_nb, status = execute_local(notebook, spec_file=spec_file, timeout=options.timeout)
        report.run_status = status
        if options.run_output is not None:
            import nbformat

            nbformat.write(new_nb, str(options.run_output))
        report.cells, report.diff_text = compare_notebooks(
            nb, new_nb, sanitizers=sanitizers, rtol=options.rtol, atol=options.atol
        )
        if report.cells:
            report.status = OUTPUTS_DIFFER
        report.seconds = time.perf_counter() - started
        return report


def _write_config(folder: Path, config: Any) -> None:
    """The caller's configuration (image repository, engine address) for the local kernel's %%container
    manager, which reads the project's own config file from the spec's folder."""
    if not config:
        return
    try:
        text = json.dumps(config)
    except (TypeError, ValueError):
        return  # not plain data: the local kernel reads the usual configuration files instead
    (folder / "jupyter_containers_config.json").write_text(text, encoding="utf-8")


def execute_local(
    notebook: Path, *, spec_file: Path | None = None, timeout: float | None = None, output: Path | None = None
) -> tuple[Any, str]:
    """Run ``notebook`` in a local kernel (its own kernelspec) in its folder, as JupyterLab would: the environment
    records its ``%%container`` cells send go into its metadata (share/metadata.py). Returns the notebook and
    "completed" or "failed"; ``output``: also written there."""
    import os

    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    from .metadata import COMM_TARGET, with_record

    nb = read_notebook(notebook)
    kernel = ((nb.metadata.get("kernelspec") or {}).get("name")) or "python3"
    env = dict(os.environ)
    if spec_file is not None:
        env["JUPYTER_CONTAINERS_SPEC_FILE"] = str(spec_file)
    client = NotebookClient(
        nb, kernel_name=kernel, timeout=timeout or 600, resources={"metadata": {"path": str(notebook.parent)}}
    )

    def on_record(msg: dict[str, Any]) -> None:
        data = (msg.get("content") or {}).get("data")
        if isinstance(data, dict) and isinstance(data.get("environment"), str):
            nb.metadata.update(with_record(dict(nb.metadata), data))

    client.comm_open_handlers[COMM_TARGET] = on_record
    status = "completed"
    try:
        client.execute(env=env)
    except CellExecutionError:
        status = "failed"
    if output is not None:
        nbformat.write(nb, str(output))
    return nb, status
