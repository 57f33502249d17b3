"""``binder export``: an environment as the files repo2docker (and so mybinder) understands.

What repo2docker reads: ``requirements.txt`` (pinned from the lock), ``runtime.txt`` (``python-X.Y``),
``apt.txt`` (names: repo2docker's base is Ubuntu, so Debian versions cannot carry over), ``postBuild`` (the
user's build commands), ``start`` (environment variables, set before every command). What it cannot express is
said in ``README.md`` there and returned as notes: the base image, root build steps, resources and GPUs (mybinder
gives every session its own fixed limits and no GPU).

:func:`import_binder` reads such a folder back (our importer, plus the ``start`` and ``postBuild`` layout written
here), so a test proves the round trip.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConflictError, NotFoundError, SpecError
from ..images.lock import atomic_write

if TYPE_CHECKING:
    from ..manager import ContainersManager

MARK = "# written by 'jupyter-containers binder export'"
FILES = ("requirements.txt", "runtime.txt", "apt.txt", "postBuild", "start", "README.md")


@dataclass(frozen=True)
class BinderResult:
    folder: Path
    files: tuple[str, ...]
    notes: tuple[str, ...]


def export_binder(
    manager: ContainersManager, name: str, folder: Path, *, repo: str | None = None, force: bool = False
) -> BinderResult:
    """Write ``folder`` (created if needed) from ``name``'s spec and lock.

    Raises:
        SpecError: no lock yet (build first); ConflictError: a file there was not written by us (``force``).
    """
    env = manager.environment(name)
    lock = manager.builder.lock_entry(env)
    if lock is None:
        raise SpecError(
            f"environment {name!r} has no lock yet; build it once so that binder/ pins what its image holds",
            file=env.spec_dir / "containers.lock",
        )
    folder = Path(folder).expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        raise ConflictError(f"{folder} is not a folder")
    if not folder.parent.is_dir():
        raise NotFoundError(f"the folder {folder.parent} does not exist")
    folder.mkdir(exist_ok=True)
    notes: list[str] = []
    texts: dict[str, str] = {}
    texts["requirements.txt"] = (
        f"{MARK} from environment {name!r}: the versions of containers.lock\n" + "\n".join(lock.packages) + "\n"
    )
    texts["runtime.txt"] = "python-" + ".".join(lock.python.split(".")[:2]) + "\n"
    if env.apt:
        texts["apt.txt"] = "\n".join(p.split("=", 1)[0] for p in env.apt) + "\n"
        if any("=" in p for p in env.apt) or lock.apt:
            notes.append("apt.txt lists package names only: repo2docker's base is Ubuntu, Debian versions do not exist")
    if env.post_build:
        body = "\n".join(env.post_build)
        texts["postBuild"] = f"#!/bin/bash\n{MARK}: one post_build command per line\nset -euo pipefail\n{body}\n"
    if env.env:
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.env.items())
        texts["start"] = f'#!/bin/bash\n{MARK}: the environment\'s env\n{exports}exec "$@"\n'
    if env.post_build_root:
        notes.append(
            "post_build_root cannot be expressed: repo2docker runs postBuild as the user; put system packages in "
            "apt.txt, or keep this environment out of mybinder"
        )
    if env.find_links:
        notes.append(
            f"find_links ({', '.join(env.find_links)}) cannot be expressed: repo2docker installs from the index only, "
            "so requirements.txt pins versions only those wheels may have; publish them to an index or a URL"
        )
    if env.base:
        notes.append(f"base = {env.base!r} cannot be expressed: repo2docker chooses its own base image")
    resources = env.resources.to_dict()
    if resources.get("gpus"):
        notes.append("gpus cannot be expressed: mybinder has no GPUs; the notebook runs on CPU there (or fails)")
    if {k for k in resources if k != "gpus"}:
        notes.append(
            f"resources ({env.resources.describe()}) cannot be expressed: mybinder sets its own limits per session"
        )
    badge_target = f"gh/{repo}/HEAD" if repo else "gh/OWNER/REPOSITORY/HEAD"
    readme = [
        f"{MARK} from environment {name!r}.",
        "",
        f"[![Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/{badge_target})",
        "",
        "Not expressible for Binder, and so left out:" if notes else "Everything of the environment is expressed.",
        *(f"- {note}" for note in notes),
        "",
    ]
    texts["README.md"] = "\n".join(readme)
    for file in texts:
        target = folder / file
        if target.exists() and not force and MARK not in target.read_text(errors="replace")[:2000]:
            raise ConflictError(f"{target} was not written by binder export; move it away or pass --force")
    for file, text in texts.items():
        atomic_write(folder / file, text)
        if file in ("postBuild", "start"):
            os.chmod(folder / file, 0o755)
    for stale in set(FILES) - set(texts):
        path = folder / stale
        if path.is_file() and MARK in path.read_text(errors="replace")[:2000]:
            path.unlink()
    return BinderResult(folder, tuple(sorted(texts)), tuple(notes))


_EXPORT = re.compile(r"^export ([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def import_binder(folder: Path, *, name: str | None = None) -> Any:
    """The environment of a binder/ folder: our importer, plus what export writes in ``start`` and ``postBuild``."""
    from ..spec.importers import import_source

    folder = Path(folder)
    result = import_source(folder, name=name)
    env = result.environment
    post = folder / "postBuild"
    if post.is_file() and MARK in post.read_text():
        lines = post.read_text().split("set -euo pipefail\n", 1)[-1].splitlines()
        env = replace(env, post_build=tuple(line for line in lines if line.strip()))
    start = folder / "start"
    if start.is_file() and MARK in start.read_text():
        values = {}
        for line in start.read_text().splitlines():
            match = _EXPORT.match(line)
            if match:
                parsed = shlex.split(match[2])
                values[match[1]] = parsed[0] if parsed else ""
        env = replace(env, env=values)
    return env
