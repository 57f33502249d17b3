"""Environment bundles: one ``.tar.gz`` with an environment's spec, lock, referenced files and (optionally) its
image, to hand to a colleague whose machine cannot reach the team's registry.

Layout (every member a regular file)::

    manifest.json          first: format, environment, and for every other member its sha256 and size
    containers.toml        the environment alone (and the spec file's registry)
    containers.lock        its lock entry alone
    files/REL              the files the spec refers to (requirements and their -r/-c includes, the wheels of
                           its find_links folders), by spec path
    image.tar              with --with-image: ``docker save`` of the image and its base (same ids when loaded)

The manifest lists the find_links folders as ``folders`` too (``files/REL``), so that an empty one is restored.

Import checks the bundle before anything lands: the manifest comes first and is bounded, every member is a
regular file named in it with its size, paths stay inside the target folder, every hash matches, nothing is
missing; files are staged in a private folder and moved into place only then.
"""

from __future__ import annotations

import filecmp
import hashlib
import json
import os
import re
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from .. import __version__
from ..errors import BundleError, ConflictError, NotFoundError, SpecError
from ..images.lock import HEADER, LOCK_VERSION, LockEntry, read_lock, write_lock_entry

if TYPE_CHECKING:
    from ..backends.base import ContainerBackend
    from ..manager import ContainersManager
    from ..spec.model import Environment

FORMAT = "jupyter-containers-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SPEC = "containers.toml"
LOCK = "containers.lock"
IMAGE = "image.tar"
FILES = "files/"
WHEEL = ".whl"
#: Bounds that a bundle must keep (a manifest, a spec, a referenced file; the image; how many members).
MAX_MANIFEST = 1 << 20
MAX_TEXT_FILE = 16 << 20
MAX_IMAGE = 64 << 30
MAX_MEMBERS = 512
#: Bounds for the wheels of find_links folders (members ``files/…/NAME.whl``): one wheel, all of them. Wheels are
#: streamed from disk into the bundle and out of it, never held in memory, so these bound disk use only, as
#: MAX_IMAGE does: CUDA builds of PyTorch are about 2.5 GB, the largest wheels on PyPI a few GB.
MAX_WHEEL = 8 << 30
MAX_WHEELS = 64 << 30
_NAME = re.compile(r"^[A-Za-z0-9_.+-]+(?:/[A-Za-z0-9_.+-]+){0,15}$")


@dataclass(frozen=True)
class ExportResult:
    environment: str
    path: Path
    size: int
    with_image: bool
    files: tuple[str, ...]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "path": str(self.path),
            "size": self.size,
            "with_image": self.with_image,
            "files": list(self.files),
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class ImportResult:
    environment: str
    spec_file: Path
    lock: LockEntry
    image_id: str | None
    files: tuple[str, ...]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "spec_file": str(self.spec_file),
            "image": self.lock.image,
            "image_id": self.image_id,
            "lock_image_id": self.lock.image_id,
            "files": list(self.files),
            "seconds": round(self.seconds, 3),
        }


# ------------------------------------------------------------------------------------------------- export
def export_bundle(
    manager: ContainersManager, name: str, output: Path | str, *, with_image: bool = False
) -> ExportResult:
    """Write ``name``'s bundle to ``output`` (atomically: a reader never sees half a bundle).

    The wheels of the environment's ``find_links`` folders go in as they are on disk (streamed, checked against
    the sha256 its tag was computed from), so that the imported environment builds with the same tag.

    Raises:
        SpecError: the environment has no lock yet (build it first), or a file it refers to lies outside the
        spec's folder; NotFoundError: ``with_image`` and the engine lacks the locked image; BundleError: a file
        the bundle cannot carry (a wheel over :data:`MAX_WHEEL`, wheels over :data:`MAX_WHEELS` in all, more than
        :data:`MAX_MEMBERS` files, a name import would refuse) or a wheel that changed while it was exported.
    """
    from ..spec.files import resolve_roots
    from ..spec.requirements import read_requirements
    from ..spec.writer import render_environment_toml

    started = time.perf_counter()
    output = Path(output).expanduser().resolve()
    env = manager.environment(name)
    lock = manager.builder.lock_entry(env)
    if lock is None:
        raise SpecError(
            f"environment {name!r} has no lock yet; build it once ('jupyter-containers build {name}') so that the "
            "bundle carries exactly what its image holds",
            file=env.spec_dir / LOCK,
        )
    if not output.parent.is_dir():
        raise NotFoundError(f"the folder of {output} does not exist; create it or choose another -o")
    spec_text = render_environment_toml(env)
    registry = manager.spec().registry
    if registry:
        spec_text = f"registry = {json.dumps(registry)}\n\n" + spec_text
    texts: dict[str, bytes] = {SPEC: spec_text.encode(), LOCK: _lock_text(name, lock).encode()}
    roots = resolve_roots(env.spec_dir, manager.builder.allowed_reference_roots)
    for rel in env.requirements:
        parsed = read_requirements(env.spec_dir / rel, roots=roots, reference=rel, file=env.source)
        for path in parsed.files:
            try:
                inside = path.resolve().relative_to(env.spec_dir.resolve()).as_posix()
            except ValueError:
                raise SpecError(
                    f"{path} (referenced by requirements {rel!r}) is outside the spec's folder, so a bundle cannot "
                    "carry it at the same place; move it next to the spec",
                    file=env.source,
                ) from None
            texts[FILES + inside] = path.read_bytes()
    wheels, folders = _find_links_members(env, roots)
    _check_carried(texts, wheels, folders, with_image)
    with tempfile.TemporaryDirectory(prefix=".jc-export-", dir=output.parent) as tmp:
        image_file = Path(tmp) / IMAGE
        image_hash = None
        if with_image:
            if manager.backend.image_id(lock.image) != lock.image_id:
                raise NotFoundError(
                    f"the engine has no image {lock.image} ({lock.image_id[:19]}) as containers.lock records it; "
                    f"build {name!r} first ('jupyter-containers build {name}')"
                )
            references = [lock.image]
            if lock.base and manager.backend.image_id(lock.base) == lock.base_image_id:
                references.append(lock.base)
            with open(image_file, "wb") as fh:
                writer = _HashingWriter(fh)
                manager.backend.save_images(references, cast(IO[bytes], writer))
            image_hash = (writer.digest.hexdigest(), writer.size)
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "environment": name,
            "builder": __version__,
            "image": {"reference": lock.image, "image_id": lock.image_id} if with_image else None,
            "files": {
                member: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
                for member, data in sorted(texts.items())
            },
        }
        for member, (_, sha, size) in wheels.items():
            manifest["files"][member] = {"sha256": sha, "size": size}
        if folders:
            manifest["folders"] = folders
        if image_hash is not None:
            manifest["files"][IMAGE] = {"sha256": image_hash[0], "size": image_hash[1]}
        partial = Path(tmp) / "bundle.tar.gz"
        with tarfile.open(partial, "w:gz", compresslevel=3, format=tarfile.PAX_FORMAT) as tar:
            _add(tar, MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
            for member, data in sorted(texts.items()):
                _add(tar, member, data)
            for member, (path, sha, size) in sorted(wheels.items()):
                _add_wheel(tar, member, path, sha, size)
            if image_hash is not None:
                info = tarfile.TarInfo(IMAGE)
                info.size = image_hash[1]
                info.mode = 0o644
                with open(image_file, "rb") as fh:
                    tar.addfile(info, fh)
        os.chmod(partial, 0o644)
        os.replace(partial, output)
    return ExportResult(
        name, output, output.stat().st_size, with_image, tuple(manifest["files"]), time.perf_counter() - started
    )


def _find_links_members(
    env: Environment, roots: tuple[Path, ...]
) -> tuple[dict[str, tuple[Path, str, int]], list[str]]:
    """The wheels of ``env``'s find_links folders as members (``files/FOLDER/NAME.whl`` → host path, sha256,
    size) and the folders (``files/FOLDER``, sorted; the spec's own folder is not listed: it always exists).

    A folder lies in the bundle where the spec names it, so the imported spec finds it; that must be inside the
    spec's folder (an allowed folder elsewhere, c.Builder.allowed_reference_roots, has no place in the bundle).
    """
    from ..images.builder import wheel_sha256
    from ..spec.files import find_links_wheels
    from ..spec.parse import environment_key

    wheels: dict[str, tuple[Path, str, int]] = {}
    folders: set[str] = set()
    spec_dir = os.path.normpath(os.path.abspath(env.spec_dir))
    for i, rel in enumerate(env.find_links):
        key = environment_key(env, "find_links", i)
        found = find_links_wheels(rel, base=env.spec_dir, roots=roots, file=env.source, key=key)
        inside = Path(os.path.relpath(os.path.normpath(os.path.join(spec_dir, rel)), spec_dir)).as_posix()
        if inside == ".." or inside.startswith("../"):
            raise SpecError(
                f"find_links folder {rel!r} is outside the spec's folder, so a bundle cannot carry it at the same "
                "place; move it next to the spec",
                file=env.source,
                key=key,
            )
        prefix = FILES if inside == "." else f"{FILES}{inside}/"
        if inside != ".":
            folders.add(prefix.rstrip("/"))
        for name, path in found:
            try:
                size = path.stat().st_size
            except OSError as exc:
                raise BundleError(f"cannot read the wheel {path}: {exc.strerror or exc}") from None
            wheels[prefix + name] = (path, wheel_sha256(path, file=env.source, key=key), size)
    return wheels, sorted(folders)


def _check_carried(
    texts: dict[str, bytes], wheels: dict[str, tuple[Path, str, int]], folders: list[str], with_image: bool
) -> None:
    """Refuse, before anything is written, a bundle that import would refuse: each bound import checks."""
    for path, _, size in sorted(wheels.values()):
        if size > MAX_WHEEL:
            raise BundleError(
                f"the wheel {path} has {size} bytes, more than a bundle carries ({MAX_WHEEL >> 30} GiB a wheel); "
                "publish it to an index the colleague can reach, or share the image through a registry"
            )
    total = sum(size for _, _, size in wheels.values())
    if total > MAX_WHEELS:
        raise BundleError(
            f"the wheels of the find_links folders have {total} bytes in all, more than a bundle carries "
            f"({MAX_WHEELS >> 30} GiB); publish some to an index, or share the image through a registry"
        )
    count = len(texts) + len(wheels) + (1 if with_image else 0)
    if count > MAX_MEMBERS:
        raise BundleError(
            f"the bundle would hold {count} files ({len(wheels)} wheels), more than the {MAX_MEMBERS} a bundle "
            "may; remove wheels the environment does not install from its find_links folders"
        )
    for member in [*texts, *wheels, *folders]:
        if not _allowed_name(member):
            raise BundleError(
                f"cannot carry {member[len(FILES) :][:200]!r} (in the spec's folder): a bundle holds names of "
                "letters, digits and '_.+-' only, up to 16 folders deep and 255 characters; rename it"
            )


def _add_wheel(tar: tarfile.TarFile, member: str, path: Path, sha: str, size: int) -> None:
    """``path`` streamed into ``tar`` as ``member``, which must hold the bytes hashed into the manifest."""
    from ..images.builder import HashingReader

    info = tarfile.TarInfo(member)
    info.size, info.mode, info.mtime = size, 0o644, 0
    try:
        with open(path, "rb") as fh:
            reader = HashingReader(fh)
            tar.addfile(info, reader)
    except OSError as exc:  # also a wheel that shrank since it was measured: "unexpected end of data"
        raise BundleError(f"cannot read the wheel {path}: {exc.strerror or exc}; export again") from None
    if reader.digest.hexdigest() != sha:
        raise BundleError(f"the wheel {path} changed while it was exported; export again")


def _lock_text(name: str, entry: LockEntry) -> str:
    import tomli_w

    return HEADER + tomli_w.dumps({"version": LOCK_VERSION, "environments": {name: entry.to_toml()}})


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    import io

    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


class _HashingWriter:
    def __init__(self, fh: IO[bytes]):
        self.fh = fh
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.fh.write(data)


# ------------------------------------------------------------------------------------------------- import
def import_bundle(
    bundle: Path | str,
    folder: Path | str,
    *,
    backend: ContainerBackend | None = None,
    force: bool = False,
    max_image_size: int = MAX_IMAGE,
) -> ImportResult:
    """Check ``bundle`` and install its environment into ``folder``: its ``containers.toml`` (added to an
    existing one), its lock entry, its files; with ``backend`` and an image in the bundle, the image is loaded
    and must have the locked id.

    Raises:
        BundleError: the bundle is malformed, unsafe or tampered with (nothing was written then);
        ConflictError: ``folder`` already has that environment or a different file of the same name (``force``
        replaces them); NotFoundError: no such bundle or folder.
    """
    from ..spec.parse import load_spec
    from ..spec.writer import add_environment_to_file

    started = time.perf_counter()
    bundle = Path(bundle).expanduser()
    folder = Path(folder).expanduser().resolve()
    if not bundle.is_file():
        raise NotFoundError(f"no bundle {bundle}")
    if not folder.is_dir():
        raise NotFoundError(f"the folder {folder} does not exist; create it first")
    with tempfile.TemporaryDirectory(prefix=".jc-import-", dir=folder) as tmp:
        staging = Path(tmp)
        manifest = _extract_checked(bundle, staging, max_image_size=max_image_size)
        name = manifest["environment"]
        folders = sorted(manifest["folders"])
        for member in folders:  # before the staged spec is read: it checks that its find_links folders exist
            try:
                _staged(staging, member).mkdir(parents=True, exist_ok=True)
            except OSError:  # a file of the bundle lies where the folder or one above it would
                raise BundleError(f"{bundle}: manifest folder {member!r} is a file of the bundle") from None
        try:
            staged = load_spec(_staged(staging, SPEC))
            entries = read_lock(_staged(staging, LOCK))
        except SpecError as exc:
            raise BundleError(f"{bundle}: its spec or lock is invalid: {exc}") from None
        if set(staged.environments) != {name} or set(entries) != {name}:
            raise BundleError(f"{bundle}: its spec and lock must hold exactly the environment {name!r}")
        env = staged.environments[name]
        lock = entries[name]
        files = sorted(m for m in manifest["files"] if m.startswith(FILES))
        # Conflicts are found before anything is written.
        target_spec = folder / SPEC
        if target_spec.exists() and not force:
            try:
                existing = load_spec(target_spec)
            except SpecError as exc:
                raise ConflictError(
                    f"{target_spec} cannot be read ({exc}); fix it or import into another folder"
                ) from None
            if name in existing.environments and existing.environments[name].to_dict() != env.to_dict():
                raise ConflictError(
                    f"{target_spec} already has a different environment {name!r}; import into another folder, or "
                    "pass --force to replace it"
                )
        for member in files:
            target = folder / member[len(FILES) :]
            if target.exists() and (
                not target.is_file() or not filecmp.cmp(target, _staged(staging, member), shallow=False)
            ):
                if not force or not target.is_file():
                    raise ConflictError(f"{target} exists with other content; move it away or pass --force")
        _check_wheel_folders(folder, folders, files)
        image_id = None
        if backend is not None and IMAGE in manifest["files"]:
            with open(_staged(staging, IMAGE), "rb") as fh:
                loaded = backend.load_images(fh)
            if lock.image_id not in loaded or backend.image_id(lock.image) != lock.image_id:
                raise BundleError(
                    f"{bundle}: its image loaded as {', '.join(i[:19] for i in loaded) or 'nothing'}, not as the "
                    f"locked {lock.image} ({lock.image_id[:19]})"
                )
            image_id = lock.image_id
        for member in folders:
            (folder / member[len(FILES) :]).mkdir(parents=True, exist_ok=True)
        for member in files:
            target = folder / member[len(FILES) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(_staged(staging, member), target)
        add_environment_to_file(target_spec, replace_source(env, target_spec), force=True)
        registry = staged.registry
        if registry and target_spec.exists():
            _add_registry(target_spec, registry)
        write_lock_entry(folder / LOCK, name, lock)
    return ImportResult(
        name, target_spec, lock, image_id, tuple(m[len(FILES) :] for m in files), time.perf_counter() - started
    )


def _check_wheel_folders(folder: Path, folders: list[str], files: list[str]) -> None:
    """The find_links folders must not be there already with other wheels than the bundle's (even with --force,
    which replaces files, never removes them): uv would be offered those too, and the tag would differ."""
    carried = set(files)
    for member in folders:
        target = folder / member[len(FILES) :]
        if target.exists() and not target.is_dir():
            raise ConflictError(f"{target} exists and is not a folder (the bundle's find_links folder); move it away")
        if not target.is_dir():
            continue
        extra = sorted(
            p.name for p in target.iterdir() if p.name.endswith(WHEEL) and f"{member}/{p.name}" not in carried
        )
        if extra:
            raise ConflictError(
                f"the find_links folder {target} already holds wheels the bundle does not carry "
                f"({', '.join(extra[:5])}): the environment would not build as exported; move them away or import "
                "into another folder"
            )


def replace_source(env: Any, source: Path) -> Any:
    from dataclasses import replace

    return replace(env, source=source)


def _add_registry(spec: Path, registry: str) -> None:
    from ..images.lock import atomic_write
    from ..spec.parse import read_toml

    if "registry" in read_toml(spec):
        return
    atomic_write(spec, f"registry = {json.dumps(registry)}\n\n" + spec.read_text(encoding="utf-8"))


def _extract_checked(bundle: Path, staging: Path, *, max_image_size: int) -> dict[str, Any]:
    """Stream the bundle into ``staging``, checking every member against the manifest; the manifest."""
    try:
        with tarfile.open(bundle, "r|gz") as tar:
            return _extract_members(bundle, iter(tar), tar, staging, max_image_size)
    except (tarfile.TarError, EOFError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise NotFoundError(f"no bundle {bundle}") from None
        raise BundleError(f"{bundle} is not a readable bundle (a .tar.gz written by 'export'): {exc}") from None


def _extract_members(
    bundle: Path, members: Iterator[tarfile.TarInfo], tar: tarfile.TarFile, staging: Path, max_image_size: int
) -> dict[str, Any]:
    first = next(members, None)
    if first is None or first.name != MANIFEST or not first.isfile() or first.size > MAX_MANIFEST:
        raise BundleError(f"{bundle}: the first member must be {MANIFEST} (at most {MAX_MANIFEST >> 10} KiB)")
    manifest = _manifest(bundle, _read(tar, first))
    expected: dict[str, dict[str, Any]] = manifest["files"]
    seen: set[str] = set()
    for count, member in enumerate(members, start=1):
        if count > MAX_MEMBERS:
            raise BundleError(f"{bundle}: more than {MAX_MEMBERS} members")
        name = member.name
        if member.isdir():
            continue
        if not member.isfile():
            raise BundleError(f"{bundle}: member {name[:200]!r} is not a regular file (links and devices are refused)")
        if name not in expected:
            raise BundleError(f"{bundle}: member {name[:200]!r} is not in its manifest")
        if name in seen:
            raise BundleError(f"{bundle}: member {name!r} appears twice")
        if member.size != expected[name]["size"]:
            raise BundleError(
                f"{bundle}: member {name!r} has {member.size} bytes, its manifest says {expected[name]['size']}"
            )
        seen.add(name)
        target = _staged(staging, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        source = tar.extractfile(member)
        if source is None:  # pragma: no cover - a regular file always has data
            raise BundleError(f"{bundle}: member {name!r} has no data")
        with open(target, "wb") as out:
            while chunk := source.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != expected[name]["sha256"]:
            raise BundleError(f"{bundle}: member {name!r} does not match its manifest's sha256 (changed or corrupt)")
    missing = sorted(set(expected) - seen)
    if missing:
        raise BundleError(f"{bundle}: members named in its manifest are missing: {', '.join(missing[:5])}")
    return manifest


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    source = tar.extractfile(member)
    return source.read() if source is not None else b""


def _manifest(bundle: Path, data: bytes) -> dict[str, Any]:
    try:
        manifest = json.loads(data)
    except ValueError as exc:
        raise BundleError(f"{bundle}: {MANIFEST} is not JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{bundle}: not a jupyter-containers bundle (its manifest's format is not {FORMAT!r})")
    if manifest.get("version") != FORMAT_VERSION:
        raise BundleError(
            f"{bundle}: bundle format version {manifest.get('version')!r} is not supported (this jupyter-containers "
            f"reads version {FORMAT_VERSION}); export it again with the same version"
        )
    from ..spec.schema import ENV_NAME_PATTERN

    name = manifest.get("environment")
    if not isinstance(name, str) or not re.match(ENV_NAME_PATTERN, name):
        raise BundleError(f"{bundle}: its manifest names no valid environment")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files or len(files) > MAX_MEMBERS:
        raise BundleError(f"{bundle}: its manifest lists no files (or more than {MAX_MEMBERS})")
    for member, entry in files.items():
        _check_name(bundle, member)
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("sha256"), str)
            or not re.fullmatch(r"[0-9a-f]{64}", entry["sha256"])
        ):
            raise BundleError(f"{bundle}: manifest entry {member!r} has no sha256")
        size = entry.get("size")
        bound = MAX_IMAGE if member == IMAGE else MAX_WHEEL if _is_wheel(member) else MAX_TEXT_FILE
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or size > bound:
            raise BundleError(f"{bundle}: manifest entry {member!r} has a size out of bounds (0 to {bound} bytes)")
    wheels = sum(entry["size"] for member, entry in files.items() if _is_wheel(member))
    if wheels > MAX_WHEELS:
        raise BundleError(
            f"{bundle}: its wheels have {wheels} bytes in all, more than an import takes ({MAX_WHEELS >> 30} GiB): "
            "ask its author for one that leaves the wheels to an index, or pull the image from a registry instead"
        )
    for required in (SPEC, LOCK):
        if required not in files:
            raise BundleError(f"{bundle}: it has no {required}")
    folders = manifest.setdefault("folders", [])  # bundles without find_links folders have none
    if not isinstance(folders, list) or len(folders) > MAX_MEMBERS:
        raise BundleError(f"{bundle}: its manifest's folders are not a list (of at most {MAX_MEMBERS})")
    for folder in folders:
        _check_name(bundle, folder)
        if not folder.startswith(FILES) or folder in files:
            raise BundleError(f"{bundle}: manifest folder {folder!r} is not a folder under {FILES}")
    return manifest


def _is_wheel(member: str) -> bool:
    return member.startswith(FILES) and member.endswith(WHEEL)


def _allowed_name(member: object) -> bool:
    """Member names are plain relative paths: no absolute path, no '..', no odd characters."""
    return (
        isinstance(member, str)
        and len(member) <= 255
        and _NAME.match(member) is not None
        and not any(p in ("", ".", "..") for p in member.split("/"))
        and (member in (SPEC, LOCK, IMAGE) or member.startswith(FILES))
        and member not in (FILES + SPEC, FILES + LOCK)
    )


def _check_name(bundle: Path, member: str) -> None:
    if not _allowed_name(member):
        raise BundleError(
            f"{bundle}: member name {str(member)[:200]!r} is not allowed (only {SPEC}, {LOCK}, {IMAGE} and "
            "files/ with relative paths inside the bundle)"
        )


def _staged(staging: Path, member: str) -> Path:
    """Where a member is staged: the spec, lock and files/ under ``project/`` as they will lie in the target
    folder (so the staged spec is validated with its files), the image beside it."""
    if member == IMAGE:
        return staging / IMAGE
    return staging / "project" / (member[len(FILES) :] if member.startswith(FILES) else member)
