"""Reading the files a spec is made of: bounded in size and depth, and confined to the spec's folder.

Specs, requirement files and import sources often come from someone else's repository, and what they
say reaches error messages, REST responses and image build contexts. So every such file is read
through here: a path may not lead out of the folders allowed for it (``..``, absolute paths, symlinks),
a file may not be larger than :data:`MAX_SOURCE_BYTES`, and a parsed document may not be nested more
than :data:`MAX_NESTING` levels deep. Each refusal is a :class:`~jupyter_containers.errors.SpecError`
naming the file (or the reference and the key it came from) and never quoting what the file holds.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..errors import SpecError

#: The largest spec source (spec file, requirements file, environment.yml, binder file) read.
MAX_SOURCE_BYTES = 1 << 20
#: The largest script or notebook read to find its imports (``capture --imported``).
MAX_CODE_BYTES = 64 << 20
#: How deeply a parsed document (TOML, YAML, JSON) may nest tables and lists.
MAX_NESTING = 64

ROOTS_HINT = "or allow its folder with c.Builder.allowed_reference_roots"
IMPORT_HINT = "or import from the folder that holds them all"


def _limit_text(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 and limit % (1 << 20) == 0 else f"{limit} bytes"


def _short(text: str) -> str:
    shown = repr(text)
    return shown if len(shown) <= 100 else shown[:80] + "..." + shown[-12:]


def check_path_text(text: str, *, what: str, file: object = None, key: str | None = None) -> None:
    """A path as typed (in a spec, on the command line) must not hold a NUL byte, which no OS accepts, nor be
    longer than file systems allow (a name of 255 bytes, a path of 4096): either would fail later, as an
    OSError from wherever the path is first used."""
    text = str(text)
    if "\0" in text:
        raise SpecError(f"{what} {_short(text)} contains a NUL byte; remove it", file=file, key=key)
    encoded = os.fsencode(text)
    if len(encoded) > 4096 or any(len(part) > 255 for part in encoded.split(b"/")):
        raise SpecError(
            f"{what} {_short(text)} is longer than file systems allow (names up to 255 bytes, paths up to 4096)",
            file=file,
            key=key,
        )


def read_source(path: Path, *, limit: int = MAX_SOURCE_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes.

    Raises:
        FileNotFoundError: the file does not exist (callers word that error for their context).
        SpecError: the path holds a NUL byte, is not a regular file (directories, FIFOs and devices would
            fail or block), cannot be read, or the file is larger than ``limit``.
    """
    path = Path(path)
    check_path_text(str(path), what="the path")
    try:
        # O_NONBLOCK: opening a FIFO would otherwise wait for a writer forever.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise
    except IsADirectoryError:
        raise SpecError("is a directory, not a file; name the file", file=path) from None
    except OSError as exc:
        raise SpecError(f"cannot read the file: {exc.strerror or exc}", file=path) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise SpecError("is a directory, not a file; name the file", file=path)
        if not stat.S_ISREG(info.st_mode):
            raise SpecError("is not a regular file (a FIFO, socket or device?); name a text file", file=path)
        if info.st_size > limit:
            raise SpecError(f"is larger than {_limit_text(limit)}, the most read from one file", file=path)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise SpecError(f"cannot read the file: {exc.strerror or exc}", file=path) from None
    finally:
        os.close(fd)
    if len(data) > limit:  # it grew while being read, or stat lied (/proc)
        raise SpecError(f"is larger than {_limit_text(limit)}, the most read from one file", file=path)
    return data


def decode_text(data: bytes, *, file: object, bom: bool = True) -> str:
    """UTF-8 text (a leading BOM dropped when ``bom``), or a SpecError saying where it is not."""
    try:
        return data.decode("utf-8-sig" if bom else "utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})", file=file) from None


def read_text(path: Path, *, limit: int = MAX_SOURCE_BYTES, bom: bool = True) -> str:
    """:func:`read_source` then :func:`decode_text`."""
    return decode_text(read_source(path, limit=limit), file=path, bom=bom)


def nesting_error(file: object, key: str | None = None) -> SpecError:
    return SpecError(f"the document is nested more than {MAX_NESTING} levels deep; flatten it", file=file, key=key)


def check_nesting(document: Any, *, file: object, limit: int = MAX_NESTING) -> None:
    """Refuse documents nested deeper than ``limit`` (walked without recursion, so any depth is safe)."""
    stack: list[tuple[Any, int]] = [(document, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Iterable[Any] = node.values()
        elif isinstance(node, list | tuple):
            children = node
        else:
            continue
        if depth >= limit:
            raise nesting_error(file)
        stack.extend((child, depth + 1) for child in children)


def resolve_roots(base: Path, extra: Iterable[str | os.PathLike[str]] = ()) -> tuple[Path, ...]:
    """``base`` and the ``extra`` allowed folders, resolved (relative extras are relative to ``base``)."""
    roots = [Path(base).resolve()]
    for root in extra:
        check_path_text(str(root), what="allowed folder")
        roots.append((Path(base) / Path(root).expanduser()).resolve())
    return tuple(dict.fromkeys(roots))


def confine(
    reference: str,
    *,
    base: Path,
    roots: Sequence[Path],
    file: object,
    key: str | None,
    what: str = "requirements file",
    hint: str = ROOTS_HINT,
    shown: str | None = None,
) -> Path:
    """The file ``reference`` (relative to ``base``) names, symlinks resolved, if it lies inside ``roots``.

    ``roots[0]`` is the folder shown in the error (the spec file's); the others are extra folders allowed
    by configuration. The error names the reference (``shown``, if given, as it was written) and
    ``file``/``key``, never the target's content.
    """
    text = str(reference)
    written = shown if shown is not None else text
    check_path_text(written, what=what, file=file, key=key)
    check_path_text(text, what=what, file=file, key=key)
    try:
        resolved = (Path(base) / text).resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # symlink loops: RuntimeError before Python 3.13
        message = f"{what} {_short(written)} cannot be resolved ({exc}); fix the path"
        raise SpecError(message, file=file, key=key) from None
    if any(resolved == root or resolved.is_relative_to(root) for root in roots):
        return resolved
    raise SpecError(
        f"{what} {_short(written)} is outside the folder {roots[0]}; referenced files must be inside it "
        f"(no '..' out of it, no absolute path elsewhere, no symlink pointing out of it): move the file into "
        f"that folder, {hint}",
        file=file,
        key=key,
    )


#: ``NAME-VERSION(-BUILD)?-PYTHON-ABI-PLATFORM.whl`` (PEP 427), each part without a dash.
_WHEEL_PARTS = (5, 6)


def find_links_wheels(
    reference: str, *, base: Path, roots: Sequence[Path], file: object, key: str | None
) -> list[tuple[str, Path]]:
    """The wheels of the folder a spec's ``find_links`` entry names, ``(file name, resolved path)`` sorted.

    The folder and each wheel in it must lie inside ``roots`` (as every file a spec refers to: its bytes go
    into the build context); a wheel may be a symlink within them. Only the folder's own ``*.whl`` files
    count (not sub-folders): what uv is offered is what the folder shows.
    """
    folder = confine(reference, base=base, roots=roots, file=file, key=key, what="find_links folder")
    if not folder.exists():
        raise SpecError(
            f"find_links folder {_short(str(reference))} does not exist (looked for {folder}); "
            "paths are relative to the spec file",
            file=file,
            key=key,
        )
    if not folder.is_dir():
        raise SpecError(
            f"find_links {_short(str(reference))} is a file, not a folder; name the folder that holds the wheels "
            "(uv installs its *.whl files)",
            file=file,
            key=key,
        )
    wheels: list[tuple[str, Path]] = []
    try:
        names = sorted(entry.name for entry in os.scandir(folder) if entry.name.endswith(".whl"))
    except OSError as exc:
        raise SpecError(
            f"cannot list the find_links folder {_short(str(reference))}: {exc.strerror or exc}", file=file, key=key
        ) from None
    for name in names:
        shown = f"{str(reference).rstrip('/')}/{name}"
        path = confine(name, base=folder, roots=roots, file=file, key=key, what="wheel", shown=shown)
        if not path.is_file():
            raise SpecError(f"wheel {_short(shown)} is not a regular file; remove it or replace it", file=file, key=key)
        parts = name[: -len(".whl")].split("-")
        if len(parts) not in _WHEEL_PARTS or not all(parts):
            raise SpecError(
                f"{_short(shown)} is not a wheel file name (NAME-VERSION-PYTHON-ABI-PLATFORM.whl, as pip wheel and "
                "uv build name them); rename it or move it out of the folder",
                file=file,
                key=key,
            )
        wheels.append((name, path))
    return wheels


def private_cache_folder(name: str) -> Path | None:
    """The folder ``name`` in our cache folder, created if need be, when it is this user's and nobody else can
    write it; else (or when it cannot be made) None. What we keep there (compiled code, wheel hashes) is loaded
    and trusted later, so a folder another user could write is never read from nor written to."""
    from ..paths import cache_dir

    try:
        folder = cache_dir() / name
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.stat()
    except OSError:
        return None
    if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return None
    return folder
