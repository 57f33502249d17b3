"""Images that build steps mount: the uv binary, and the wheels of each ``find_links`` folder.

Why images and not the build context: the context travels to the engine with every build. uv is 38 MB of it,
and a PyTorch CPU wheel 192 MB. Measured on this machine (2026-12-02), a one-step build took 0.35 s with an
empty context and 1.07 s with uv in it and mounted (the upload, and BuildKit's hashing of the file for the
step's cache key, every time); with a 200 MB file, 3.5 s. That was paid by every build, also by an edit that
installs one package in 2 s, and over the network for a remote engine. As images they go to each engine once;
a build's context then holds only the spec's own small files.

The images are written by hand (``docker save`` archives loaded with ``POST /images/load``) rather than built,
so that an image's id is a function of its files alone: a config without timestamps, one layer. The build steps
that mount them are cached by that id, so an engine that lost one (or a second engine) gets the same image back
and keeps every cached layer.

- ``jupyter-containers/uv:VERSION`` holds ``/uv``. The tag names the version only, so planning a build reads
  no binary; before each build that runs, the engine's image under that tag is checked against the id this
  binary gives (another binary of the same version is loaded over it).
- ``jupyter-containers/wheels:DIGEST`` holds ``/wheels/NAME.whl``, one image per folder. DIGEST is the folder's
  name in the Dockerfile (a digest of its wheels' names and sha256, :meth:`Builder._find_links`), so the tag is
  content-addressed: an image under it is that folder's.

They are labelled as ours (kind ``tools``, shown by ``jupyter-containers images``), with no owner: the same
files give the same image whoever loads it. ``prune`` keeps the current uv's image, like a base image, and
removes other uv versions' images and a wheels image once no environment image on the engine was built from it
(label ``wheels``); the next build that needs one loads it again.
Nothing of them is in an environment's layers (``keep_uv`` copies the binary from uv's image, as before).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import IO

from ..backends.base import BuildEvent, ContainerBackend, ImageInfo, labels
from ..errors import BuildError

UV_REPOSITORY = "jupyter-containers/uv"
WHEELS_REPOSITORY = "jupyter-containers/wheels"
#: Where the binary lies in uv's image (the source of the build steps' bind mount).
UV_PATH = "/uv"
#: Where the wheels lie in a folder's image.
WHEELS_PATH = "/wheels"
#: The image id that uv's binary gives, by (tag, version, path, size, mtime_ns).
_IDS: dict[tuple[str, str, str, int, int], str] = {}

Callback = Callable[[BuildEvent], None]


def uv_tag(version: str) -> str:
    """``jupyter-containers/uv:0.13.9``."""
    return f"{UV_REPOSITORY}:{version}"


def wheels_tag(folder: str) -> str:
    """``jupyter-containers/wheels:1a2b3c4d5e6f7a8b``, for the folder named by that digest."""
    return f"{WHEELS_REPOSITORY}:{folder}"


def _architecture() -> str:
    import platform

    machine = platform.machine().lower()
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)


class _HashingWriter:
    """A file written by tarfile while its sha256 is computed (the layer's diff id)."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.fh.write(data)

    def tell(self) -> int:
        return self.fh.tell()


def _write_archive(out: IO[bytes], layer: IO[bytes], layer_size: int, diff_id: str, tag: str, **values: str) -> str:
    """The ``docker save`` archive around one layer (read from ``layer``); returns the image id it gives."""
    import tarfile

    config = {
        "architecture": _architecture(),
        "os": "linux",
        "config": {"Labels": labels(kind="tools", **values)},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": f"jupyter-containers: {values.get('role', '')} mounted by build steps"}],
    }
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    config_digest = hashlib.sha256(config_bytes).hexdigest()
    layer_name = diff_id.split(":", 1)[1] + "/layer.tar"
    manifest = json.dumps([{"Config": f"{config_digest}.json", "RepoTags": [tag], "Layers": [layer_name]}]).encode()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, size, data in (
            (f"{config_digest}.json", len(config_bytes), io.BytesIO(config_bytes)),
            (layer_name, layer_size, layer),
            ("manifest.json", len(manifest), io.BytesIO(manifest)),
        ):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = size, 0o644, 0
            tar.addfile(info, data)
    return f"sha256:{config_digest}"


def uv_archive(binary: bytes, tag: str, version: str) -> tuple[bytes, str]:
    """uv's image as a ``docker save`` archive, and the image id the engine will give it: byte-identical for
    the same binary, so the same id on every engine and after every reload."""
    import tarfile

    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(UV_PATH.lstrip("/"))
        info.size, info.mode, info.mtime = len(binary), 0o755, 0
        tar.addfile(info, io.BytesIO(binary))
    layer_bytes = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    out = io.BytesIO()
    image_id = _write_archive(out, io.BytesIO(layer_bytes), len(layer_bytes), diff_id, tag, role="uv", uv=version)
    return out.getvalue(), image_id


def _uv_binary() -> tuple[Path, tuple[str, int, int]]:
    import uv

    path = Path(uv.find_uv_bin())
    try:
        stat = path.stat()
    except OSError as exc:
        raise BuildError(f"cannot read uv's binary {path}: {exc.strerror or exc}; reinstall the uv package") from None
    return path, (str(path), stat.st_size, stat.st_mtime_ns)


def _uv_archive_of(path: Path, tag: str, version: str) -> tuple[bytes, str]:
    try:
        binary = path.read_bytes()
    except OSError as exc:
        raise BuildError(f"cannot read uv's binary {path}: {exc.strerror or exc}; reinstall the uv package") from None
    return uv_archive(binary, tag, version)


def ensure_uv(backend: ContainerBackend, version: str, on_event: Callback | None = None, *, tag: str = "") -> str:
    """Make sure the engine's uv image (``tag``, by default :func:`uv_tag`) is this uv binary's, loading it when
    absent or another binary's; called before each build that runs. Returns the image id.

    The id is computed once per process and binary (60 ms: the archive is made and hashed) and only the id is
    kept: the 38 MB archive is made again on the rare load.
    """
    tag = tag or uv_tag(version)
    path, key = _uv_binary()
    known = (tag, version) + key
    image_id = _IDS.get(known)
    if image_id is None:
        _, image_id = _uv_archive_of(path, tag, version)
        _IDS[known] = image_id
    if backend.image_id(tag) == image_id:
        return image_id
    if on_event:
        on_event(BuildEvent("info", step="", text=f"loading uv {version} onto the engine as {tag} (once per engine)"))
    data, image_id = _uv_archive_of(path, tag, version)
    backend.load_images(io.BytesIO(data))
    if backend.image_id(tag) != image_id:
        raise BuildError(f"the engine loaded uv's image but {tag} is not {image_id[:19]}; build again")
    return image_id


def wheels_layer(out: IO[bytes], wheels: Sequence[tuple[str, str, Path]]) -> str:
    """The layer of a folder's image (``wheels/`` and its ``(name, sha256, path)`` wheels, streamed from disk)
    written to ``out``; returns its diff id. A wheel whose bytes differ from its sha256 (rebuilt since the plan)
    fails the build."""
    import tarfile

    from .builder import HashingReader

    writer = _HashingWriter(out)
    with tarfile.open(fileobj=writer, mode="w", format=tarfile.USTAR_FORMAT) as tar:  # type: ignore[call-overload]
        info = tarfile.TarInfo(WHEELS_PATH.lstrip("/"))
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
        tar.addfile(info)
        for name, sha, path in sorted(wheels):
            try:
                with path.open("rb") as fh:
                    info = tarfile.TarInfo(f"{WHEELS_PATH.lstrip('/')}/{name}")
                    info.size, info.mode, info.mtime = os.fstat(fh.fileno()).st_size, 0o644, 0
                    reader = HashingReader(fh)
                    tar.addfile(info, reader)
            except ValueError as exc:  # USTAR holds names of up to 100 characters
                raise BuildError(
                    f"cannot add the wheel {path.name!r} to its folder's image: {exc}; give the file a shorter name "
                    "(a wheel's name may drop its build tag) or install it from an index"
                ) from None
            except OSError as exc:
                raise BuildError(f"cannot read the wheel {path}: {exc.strerror or exc}; build again") from None
            if reader.digest.hexdigest() != sha:
                raise BuildError(f"the wheel {path} changed since it was hashed into the tag; build again")
    return "sha256:" + writer.digest.hexdigest()


def ensure_wheels(
    backend: ContainerBackend,
    folder: str,
    wheels: Sequence[tuple[str, str, Path]],
    on_event: Callback | None = None,
) -> str:
    """Make sure the engine has the image of the ``find_links`` folder named ``folder`` (its wheels as
    ``(name, sha256, path)``), loading it once per engine: two temporary files here (the layer, then the
    archive), streamed to the engine. Returns the image id."""
    tag = wheels_tag(folder)
    image_id = backend.image_id(tag)
    if image_id is not None:
        return image_id
    if on_event:
        size = sum(path.stat().st_size for _, _, path in wheels if path.exists()) >> 20
        on_event(BuildEvent("info", step="", text=f"loading the wheels of a find_links folder ({size} MB) as {tag}"))
    import tempfile  # here: planning an unchanged build imports this module

    with tempfile.TemporaryFile() as layer, tempfile.TemporaryFile() as archive:
        diff_id = wheels_layer(layer, wheels)
        layer_size = layer.tell()
        layer.seek(0)
        image_id = _write_archive(archive, layer, layer_size, diff_id, tag, role="wheels", folder=folder)
        archive.seek(0)
        backend.load_images(archive)
    if backend.image_id(tag) != image_id:
        raise BuildError(f"the engine loaded the wheels' image but {tag} is not {image_id[:19]}; build again")
    return image_id


def stale_uv_images(images: Sequence[ImageInfo], version: str) -> list[str]:
    """The tags (or ids, when untagged) of uv images among ``images`` that are not this uv version's: what an
    upgrade of uv leaves. Another user's build with another uv loads its image again (38 MB, once)."""
    current = uv_tag(version)
    return [
        ref
        for image in images
        if image.label("role") == "uv" and image.label("kind") == "tools" and current not in image.tags
        for ref in ([t for t in image.tags if t.startswith(f"{UV_REPOSITORY}:")] or [image.id])
    ]


def unused_wheel_images(images: Sequence[ImageInfo], removed: Collection[str] = ()) -> list[str]:
    """The tags (or ids) of the find_links folders' images among ``images`` that no environment image among them,
    but those in ``removed`` (tags or ids about to go), was built from (its ``wheels`` label), whoever built it:
    the same wheels give the same image, and the next build that needs one loads it again."""
    going, used = set(removed), set[str]()
    for image in images:
        if image.label("kind") == "environment" and not set(image.tags or [image.id]) <= going:
            used.update(folder for folder in (image.label("wheels") or "").split(",") if folder)
    unused: list[str] = []
    for image in images:
        if image.label("role") == "wheels" and image.label("folder") not in used:
            unused += [t for t in image.tags if t.startswith(f"{WHEELS_REPOSITORY}:")] or [image.id]
    return unused
