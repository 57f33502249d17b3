"""The spec writer: puts an environment into ``containers.toml`` (or ``pyproject.toml``) as TOML text.

It exists apart from the importers because writing is a different job with its own rules: an existing
file keeps its text and comments (the new table is appended, or with ``force`` cut in where the old one
was), the result must load before it is kept, and the write is atomic and keeps the file's permissions.
Importers, ``capture`` and the front ends all hand their environments here.
"""

from __future__ import annotations

import copy
import os
import stat
import sys
import tempfile
from collections.abc import Iterable, Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

from ..errors import SpecError
from .files import check_path_text
from .importers import _read_text  # the same strict UTF-8 read, and error, as for imported files
from .model import Environment
from .parse import load_spec, read_toml, spec_from_dict

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


def render_environment_toml(env: Environment, notes: Iterable[str] = ()) -> str:
    """The ``[environments.NAME]`` table for ``containers.toml``, with the import notes as comments above it,
    so that what was not carried over stays visible next to what was."""
    return _render(env, notes, ("environments",))


def _render(env: Environment, notes: Iterable[str], prefix: tuple[str, ...]) -> str:
    doc: dict[str, Any] = {}
    cursor = doc
    for part in prefix:
        cursor = cursor.setdefault(part, {})
    cursor[env.name] = env.to_dict()
    return _comments(notes) + _dumps(doc)


def _comments(notes: Iterable[str]) -> str:
    out = []
    for note in notes:
        for line in str(note).splitlines() or [""]:
            # A TOML comment may hold any character but the control ones (tab aside): notes quote the
            # imported files, so escape those rather than write a file that no longer parses.
            line = "".join(f"\\x{ord(ch):02x}" if _is_control(ch) else ch for ch in line)
            out.append(f"# {line}".rstrip() + "\n")
    return "".join(out)


def _is_control(ch: str) -> bool:
    return (ord(ch) < 0x20 and ch != "\t") or ch == "\x7f"


def _dumps(doc: Mapping[str, Any]) -> str:
    import tomli_w

    text = tomli_w.dumps(doc, multiline_strings=True)
    if tomllib.loads(text) != doc:
        # Multi-line strings normalize "\r\n" to "\n"; escaped strings keep every character.
        text = tomli_w.dumps(doc)
    return text


def add_environment_to_file(path: Path, env: Environment, notes: Iterable[str] = (), *, force: bool = False) -> None:
    """Add ``env`` to a spec file, creating it if needed, and prove the result loads before keeping it.

    An existing file keeps its text and comments: the table is appended (or, with ``force``, the old table
    is cut out and the new one put in its place). When the old table cannot be cut out textually (for
    example it is written with dotted keys or inline tables), the whole file is re-rendered, which loses
    its comments; a comment at the top of the file then says so.
    """
    check_path_text(str(path), what="output file")
    path = Path(path)
    if path.is_symlink():
        path = path.resolve()
    if path.is_dir():
        raise SpecError("is a folder; name the spec file to write, such as containers.toml inside it", file=path)
    if not path.parent.is_dir():
        raise SpecError(
            f"the folder {path.parent} does not exist; create it first, or write the spec file somewhere else",
            file=path,
        )
    prefix = ("tool", "jupyter-containers", "environments") if path.name == "pyproject.toml" else ("environments",)
    notes = tuple(notes)
    rendered = _render(env, notes, prefix)
    if not path.exists():
        old_text = None
        new_text = rendered
        expected = tomllib.loads(rendered)
    else:
        old_text = _read_text(path)
        old = read_toml(path)
        expected = copy.deepcopy(old)
        cursor: Any = expected
        for depth, part in enumerate(prefix):
            if not isinstance(cursor, dict):
                raise SpecError("is not a table", file=path, key=".".join(prefix[:depth]))
            cursor = cursor.setdefault(part, {})
        if not isinstance(cursor, dict):
            raise SpecError(
                "is not a table; environments are tables such as [environments.default]",
                file=path,
                key=".".join(prefix),
            )
        exists = env.name in cursor
        if exists and not force:
            raise SpecError(
                f"environment {env.name!r} already exists; pass --name NAME to import under another name, "
                "or --force to replace it",
                file=path,
                key=".".join((*prefix, env.name)),
            )
        cursor[env.name] = env.to_dict()
        edited = _replace_table(old_text, (*prefix, env.name), rendered) if exists else _append(old_text, rendered)
        if edited is not None and _loads_or_none(edited) == expected:
            new_text = edited
        else:
            new_text = (
                "# re-written by jupyter-containers to replace an environment; earlier comments were not kept\n"
                + _comments(notes)
                + _dumps(expected)
            )
    _validate(expected, path, prefix)
    try:
        _atomic_write(path, new_text)
    except OSError as exc:
        raise SpecError(f"cannot write the file: {exc.strerror or exc}", file=path) from None
    try:
        load_spec(path)
    except Exception:
        if old_text is None:
            with suppress(FileNotFoundError):
                path.unlink()
        else:
            _atomic_write(path, old_text)
        raise


def _validate(document: Mapping[str, Any], path: Path, prefix: tuple[str, ...]) -> None:
    table: Any = document
    for part in prefix[:-1]:
        table = table[part]
    spec_from_dict(table, path.resolve(), key_prefix=".".join(prefix[:-1]))


def _loads_or_none(text: str) -> dict[str, Any] | None:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return None


def _append(old_text: str, rendered: str) -> str:
    if not old_text.strip():
        return rendered
    return old_text.rstrip("\n") + "\n\n" + rendered


def _header_key(line: str) -> tuple[str, ...] | None:
    if not line.lstrip().startswith("["):
        return None
    try:
        node: Any = tomllib.loads(line)
    except tomllib.TOMLDecodeError:
        return None
    key: list[str] = []
    while isinstance(node, dict) and len(node) == 1:
        name, node = next(iter(node.items()))
        key.append(name)
        if isinstance(node, list):
            break
    return tuple(key)


def _replace_table(text: str, key: tuple[str, ...], rendered: str) -> str | None:
    # Comment lines directly above the old table (earlier import notes) go with it. A line is a header only
    # if the text before it is complete TOML, which rules out header-like lines inside multi-line strings.
    # None when there was no such table.
    out: list[str] = []
    inserted = False
    skipping = False
    trailing: list[str] = []  # comment lines at the end of a skipped table belong to the next table
    lines = text.splitlines(keepends=True)
    for index, line in enumerate(lines):
        header = _header_key(line)
        if header is not None and _loads_or_none("".join(lines[:index])) is None:
            header = None  # a header-like line inside a multi-line string or array
        if header is not None:
            was_skipping, skipping = skipping, header[: len(key)] == key
            if skipping:
                while out and out[-1].lstrip().startswith("#"):
                    out.pop()
                if not inserted:
                    if out and out[-1].strip():
                        out.append("\n")
                    out.append(rendered if rendered.endswith("\n") else rendered + "\n")
                    out.append("\n")
                    inserted = True
            elif was_skipping:
                out.extend(trailing)
            trailing = []
        elif skipping:
            stripped = line.strip()
            if stripped.startswith("#"):
                trailing.append(line)
            elif stripped:
                trailing = []
        if not skipping:
            out.append(line)
    if not inserted:
        return None
    return "".join(out).rstrip("\n") + "\n"


def _umask() -> int:
    # Read, not set-and-restore: os.umask() changes it for every thread of the server meanwhile.
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _atomic_write(path: Path, text: str) -> None:
    # Not images.lock.atomic_write: that one always chmods to 0o644 and does not fsync. A user's spec file
    # must keep its own mode (or get 0o666 & ~umask when new, as open() would give it) and survive a crash.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        if path.exists():
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        else:
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
