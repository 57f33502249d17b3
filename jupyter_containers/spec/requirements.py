"""Reading pip requirements files (``-r``/``-c`` includes, continuations, comments, global options).

A requirements file is a host-side artefact: anything in it that only makes sense on the host (editable
installs, local paths, local find-links) is refused here with a message saying what to write instead,
because it would otherwise fail much later, deep inside an image build.

Every file read (the top one and each ``-r``/``-c`` include, recursively) must lie inside the allowed
folders (by default the folder of the top file; for a spec's ``requirements``, the spec's folder): errors
quote lines of the files they are about, and their requirements go into the build context, so a
reference must not reach files outside the workspace.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import SpecError, SpecNotFoundError
from .files import ROOTS_HINT, confine, read_text
from .parse import check_requirement, show

# One whitespace character, not a run: "\s+#" makes each search quadratic in a long run of spaces. The
# text removed is the same, since callers strip what is left.
_COMMENT_RE = re.compile(r"(^|\s)#.*$")
_IS_COMMENT_RE = re.compile(r"\s*#")
_OPTIONS_START_RE = re.compile(r"\s-")
#: The most files one requirements file may pull in through -r/-c (each at most 1 MiB).
MAX_INCLUDED_FILES = 256
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_HASH_RE = re.compile(r"^[A-Za-z0-9]+:[0-9A-Fa-f]+$")
_ARCHIVE_SUFFIXES = (".whl", ".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tar.xz", ".txz", ".tar", ".zip")

_LOCAL_HINT = "does not exist inside the image; publish it, use a URL (name @ https://...), or install it in post_build"

_SHORT_OPTIONS = {
    "-r": "--requirement",
    "-c": "--constraint",
    "-i": "--index-url",
    "-f": "--find-links",
    "-e": "--editable",
}
_VALUE_OPTIONS = {
    "--requirement",
    "--constraint",
    "--index-url",
    "--extra-index-url",
    "--find-links",
    "--only-binary",
    "--no-binary",
    "--editable",
}
_FLAG_OPTIONS = {"--pre", "--prefer-binary"}
_SUPPORTED_HELP = (
    "-r/--requirement, -c/--constraint, -i/--index-url, --extra-index-url, -f/--find-links (http(s) URLs), "
    "--pre, --prefer-binary, --only-binary, --no-binary, and --hash=ALGO:DIGEST after a requirement"
)


@dataclass(frozen=True)
class RequirementsFile:
    """What a requirements file (and everything it includes) asks for.

    ``files`` lists every file read, the top one first, so that callers can hash their contents to
    notice when a rebuild is due.
    """

    requirements: tuple[str, ...] = ()
    constraints: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    files: tuple[Path, ...] = ()


def read_requirements(
    path: Path,
    *,
    roots: Sequence[Path] | None = None,
    reference: str | None = None,
    file: object = None,
    key: str | None = None,
    hint: str = ROOTS_HINT,
) -> RequirementsFile:
    """Parse a requirements file the way pip does, refusing what cannot work inside an image.

    Args:
        path: the file.
        roots: the folders it and its includes must lie in, resolved (default: the folder of ``path``).
            ``roots[0]`` is the one errors name.
        reference, file, key: where ``path`` was named (such as ``"requirements.txt"`` at
            ``environments.x.requirements[0]`` of a spec file), so that errors about it point there.
        hint: what the error for a file outside ``roots`` suggests besides moving it.

    Raises:
        SpecError: the file or an include is outside ``roots``, missing, unreadable, too large, or holds a
            line that cannot work inside an image.
    """
    path = Path(path)
    if roots is None:
        roots = (path.resolve().parent,)
    reader = _Reader(tuple(roots), hint)
    origin = None if file is None else _Origin(file, key, reference or str(path), included=False)
    reader.read_file(path, constraint=False, stack=(), origin=origin)
    return reader.result()


def parse_requirement_lines(
    lines: Iterable[str],
    *,
    file: Path,
    keys: Sequence[str] | None = None,
    roots: Sequence[Path] | None = None,
    hint: str = ROOTS_HINT,
) -> RequirementsFile:
    """Requirements-file lines embedded in another file, such as the ``- pip:`` list of an environment.yml.

    Includes are relative to ``file``'s directory and must lie in ``roots`` (default: that directory);
    ``keys`` name each line in errors (default ``line N``). ``files`` holds only the included files, since
    ``file`` itself was read by the caller.
    """
    file = Path(file).resolve()
    reader = _Reader(tuple(roots) if roots is not None else (file.parent,), hint)
    for index, line in enumerate(lines):
        key = keys[index] if keys is not None else f"line {index + 1}"
        text = _COMMENT_RE.sub("", str(line)).strip()
        if text:
            reader.line(text, file=file, key=key, constraint=False, stack=(file,))
    return reader.result()


def split_hashes(requirement: str) -> tuple[str, tuple[str, ...]]:
    """``("numpy==1.26.4", ("sha256:abc",))`` from ``"numpy==1.26.4 --hash=sha256:abc"``.

    Hashes stay attached to requirements in :class:`RequirementsFile`; this separates them again for
    places (such as a spec's ``pip`` list) that take plain requirements.
    """
    parts = requirement.split(" --hash=")
    return parts[0].strip(), tuple(p.strip() for p in parts[1:])


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    # (first physical line number, text), continuations joined and comments removed as pip does them.
    pending: list[str] = []
    start = 0
    for number, line in enumerate(text.splitlines(), start=1):
        is_comment = _IS_COMMENT_RE.match(line) is not None
        if line.endswith("\\") and not is_comment:
            if not pending:
                start = number
            pending.append(line[:-1])
            continue
        if pending:
            # A comment line ends a continuation (pip does the same); its text is dropped below.
            pending.append(" " + line if is_comment else line)
            joined, first = "".join(pending), start
            pending = []
        else:
            joined, first = line, number
        joined = _COMMENT_RE.sub("", joined).strip()
        if joined:
            yield first, joined
    if pending:
        joined = _COMMENT_RE.sub("", "".join(pending)).strip()
        if joined:
            yield start, joined


@dataclass(frozen=True)
class _Origin:
    """Where a file was named: ``file``/``key`` (a spec key, or ``line N`` of the including file)."""

    file: object
    key: str | None
    reference: str
    included: bool


class _Reader:
    def __init__(self, roots: tuple[Path, ...], hint: str) -> None:
        self.roots = roots
        self.hint = hint
        self.requirements: list[str] = []
        self.constraints: list[str] = []
        self.options: list[str] = []
        self.files: list[Path] = []
        self.done: set[tuple[Path, bool]] = set()

    def result(self) -> RequirementsFile:
        return RequirementsFile(
            requirements=tuple(dict.fromkeys(self.requirements)),
            constraints=tuple(dict.fromkeys(self.constraints)),
            options=tuple(dict.fromkeys(self.options)),
            files=tuple(dict.fromkeys(self.files)),
        )

    def read_file(self, path: Path, *, constraint: bool, stack: tuple[Path, ...], origin: _Origin | None) -> None:
        what = "included file" if origin is not None and origin.included else "requirements file"
        file, key = (origin.file, origin.key) if origin is not None else (None, None)
        shown = origin.reference if origin is not None else str(path)
        resolved = confine(
            str(path), base=Path.cwd(), roots=self.roots, file=file, key=key, what=what, shown=shown, hint=self.hint
        )
        if resolved in stack:
            chain = " -> ".join(p.name for p in (*stack[stack.index(resolved) :], resolved))
            where, key = (origin.file, origin.key) if origin else (resolved, None)
            raise SpecError(
                f"{path.name} includes itself ({chain}); remove one of the -r/-c lines", file=where, key=key
            )
        if (resolved, constraint) in self.done:
            return  # read already: its lines are in the result (reading it again would only repeat them)
        if len(self.done) >= MAX_INCLUDED_FILES:
            where, key = (origin.file, origin.key) if origin else (resolved, None)
            raise SpecError(
                f"more than {MAX_INCLUDED_FILES} files are included through -r/-c; merge some of them",
                file=where,
                key=key,
            )
        self.done.add((resolved, constraint))
        try:
            text = read_text(resolved)
        except FileNotFoundError:
            if origin is not None and origin.included:
                raise SpecError(
                    f"included file {show(origin.reference)} does not exist (looked for {resolved}); "
                    "-r/-c paths are relative to the file that includes them",
                    file=origin.file,
                    key=origin.key,
                ) from None
            if origin is not None:
                raise SpecNotFoundError(
                    f"requirements file {show(origin.reference)} does not exist (looked for {resolved})",
                    file=origin.file,
                    key=origin.key,
                ) from None
            raise SpecNotFoundError(f"requirements file {path} does not exist") from None
        self.files.append(resolved)
        for number, line in _logical_lines(text):
            self.line(line, file=resolved, key=f"line {number}", constraint=constraint, stack=(*stack, resolved))

    def line(self, line: str, *, file: Path, key: str, constraint: bool, stack: tuple[Path, ...]) -> None:
        if line.startswith("-"):
            self._options(line, file=file, key=key, constraint=constraint, stack=stack)
            return
        match = _OPTIONS_START_RE.search(line)
        requirement, options = (line[: match.start()], line[match.end() - 1 :]) if match else (line, "")
        text = _check(requirement.strip(), file=file, key=key)
        hashes = _hashes(options, file=file, key=key)
        text += "".join(f" --hash={h}" for h in hashes)
        (self.constraints if constraint else self.requirements).append(text)

    def _options(self, line: str, *, file: Path, key: str, constraint: bool, stack: tuple[Path, ...]) -> None:
        tokens = _split(line, file=file, key=key)
        i = 0
        while i < len(tokens):
            token = tokens[i]
            i += 1
            if not token.startswith("-"):
                raise SpecError(
                    f"{token!r} follows an option line; put each requirement on its own line", file=file, key=key
                )
            value: str | None = None
            if token.startswith("--"):
                option, eq, rest = token.partition("=")
                value = rest if eq else None
            else:
                option = _SHORT_OPTIONS.get(token[:2], token)
                if len(token) > 2 and token[:2] in _SHORT_OPTIONS:
                    value = token[2:]
            if option in _FLAG_OPTIONS:
                if value is not None:
                    raise SpecError(f"{option} takes no value; write it alone", file=file, key=key)
                self.options.append(option)
                continue
            if option not in _VALUE_OPTIONS:
                raise SpecError(
                    f"option {token!r} is not supported in requirements files; supported: {_SUPPORTED_HELP}. "
                    "Move other pip settings to the host's pip configuration, or remove the line",
                    file=file,
                    key=key,
                )
            if value is None:
                if i >= len(tokens):
                    raise SpecError(f"{option} needs a value, such as {option} VALUE", file=file, key=key)
                value = tokens[i]
                i += 1
            self._option(option, value, file=file, key=key, constraint=constraint, stack=stack)

    def _option(
        self, option: str, value: str, *, file: Path, key: str, constraint: bool, stack: tuple[Path, ...]
    ) -> None:
        if option == "--editable":
            raise SpecError(
                f"-e/--editable {value!r} is not supported: an editable install {_LOCAL_HINT}", file=file, key=key
            )
        if option in ("--requirement", "--constraint"):
            if _URL_RE.match(value):
                raise SpecError(
                    f"{option} {value!r} is a remote file, which is not supported; "
                    "download it next to this file and include it by path",
                    file=file,
                    key=key,
                )
            nested_constraint = constraint or option == "--constraint"
            origin = _Origin(file, key, value, included=True)
            self.read_file(file.parent / value, constraint=nested_constraint, stack=stack, origin=origin)
            return
        if option == "--find-links" and not value.lower().startswith(("http://", "https://")):
            raise SpecError(
                f"--find-links {value!r} is a local path, which does not exist inside the image; "
                "serve the packages over http(s) and use that URL, publish them to an index, or name the folder of "
                "wheels in the environment's find_links (see docs/spec.md)",
                file=file,
                key=key,
            )
        if option in ("--index-url", "--extra-index-url") and not _URL_RE.match(value):
            raise SpecError(f"{option} {value!r} is not a URL; use https://...", file=file, key=key)
        self.options.append(f"{option} {value}")


def _split(line: str, *, file: Path, key: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError as exc:
        raise SpecError(f"cannot split {line!r} into words ({exc}); check its quotes", file=file, key=key) from None


def _hashes(options: str, *, file: Path, key: str) -> list[str]:
    tokens = _split(options, file=file, key=key) if options else []
    hashes: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        option, eq, value = token.partition("=")
        if option != "--hash":
            raise SpecError(
                f"option {token!r} after a requirement is not supported; only --hash=ALGO:DIGEST may follow one",
                file=file,
                key=key,
            )
        if not eq:
            if i >= len(tokens):
                raise SpecError("--hash needs a value, such as --hash=sha256:DIGEST", file=file, key=key)
            value = tokens[i]
            i += 1
        if not _HASH_RE.match(value):
            raise SpecError(f"--hash {value!r} is not a hash; use --hash=sha256:DIGEST", file=file, key=key)
        hashes.append(value)
    return hashes


def _check(requirement: str, *, file: Path, key: str) -> str:
    if _is_local(requirement):
        raise SpecError(f"{requirement!r} is a local path, which {_LOCAL_HINT}", file=file, key=key)
    if _URL_RE.match(requirement):
        egg = re.search(r"[#&]egg=([A-Za-z0-9._-]+)", requirement)
        name = egg.group(1) if egg else "NAME"
        url = re.sub(r"[#&]egg=[A-Za-z0-9._-]+", "", requirement)
        raise SpecError(
            f"{requirement!r} is a URL without a package name; write it as '{name} @ {url}'", file=file, key=key
        )
    return check_requirement(requirement, file=file, key=key)


def _is_local(requirement: str) -> bool:
    text = requirement.strip()
    if text.startswith((".", "/", "~", "\\")) or text.lower().startswith("file:"):
        return True
    if re.match(r"^[A-Za-z]:[\\/]", text):
        return True
    _, at, url = text.partition("@")
    if at and url.strip().lower().startswith("file:"):
        return True
    if at or "://" in text:
        return False
    head = re.split(r"[;\s\[]", text, maxsplit=1)[0]
    if "/" in head or "\\" in head:
        return True
    # pip reads "pkg-1.0-py3-none-any.whl" as a file to install, although it would parse as a project name.
    return head.lower().endswith(_ARCHIVE_SUFFIXES)
