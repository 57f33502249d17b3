"""The uv binary as a tiny image on the engine, mounted by the build steps that run uv.

Why an image and not the build context: the context travels to the engine with every build, and uv is 38 MB of
it. Measured on this machine (2026-12-02), a one-step build took 0.35 s with an empty context and 1.07 s with
uv in it and mounted: the upload, and BuildKit's hashing of the file for the step's cache key, every time, also
for an edit that installs one package in 2 s, and over the network for a remote engine. As an image it goes to
each engine once; a build's context then holds only the spec's own files (and the wheels of ``find_links``).

The image is made by hand (a ``docker save`` archive loaded with ``POST /images/load``) rather than built, so
that its id is a function of uv's bytes alone: a config with no timestamps, one layer holding ``/uv``. The build
steps that mount it are cached by that id, so an engine where it was removed (or a second engine) gets the same
image back and keeps every cached layer. Its tag names uv's version; before each build that runs, the engine's
image under that tag is checked against the id this binary gives (a different binary of the same version is
loaded over it). It is labelled as ours (``kind = "tools"``) and ``prune`` keeps it, like a base image.

Nothing of it enters an environment's layers (``keep_uv`` copies the binary in, as before, from this image).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path

from ..backends.base import BuildEvent, ContainerBackend, labels
from ..errors import BuildError

REPOSITORY = "jupyter-containers/uv"
#: Where the binary lies in the image (the source of the build steps' bind mount).
PATH_IN_IMAGE = "/uv"
#: The image id that uv's binary gives, by (tag, version, path, size, mtime_ns).
_IDS: dict[tuple[str, str, str, int, int], str] = {}


def image_tag(version: str) -> str:
    """``jupyter-containers/uv:0.13.9``. The tag names the version only, so that planning a build reads no binary;
    :func:`ensure` checks the image's id, which is a function of the binary's bytes, before every build."""
    return f"{REPOSITORY}:{version}"


def _architecture() -> str:
    import platform

    machine = platform.machine().lower()
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)


def archive(binary: bytes, tag: str, version: str) -> tuple[bytes, str]:
    """A ``docker save`` archive of the image and the image id the engine will give it (the sha256 of its
    config): byte-identical for the same binary, so the same id on every engine and after every reload."""
    import tarfile  # here: planning a build imports this module, and an unchanged one writes no archive

    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(PATH_IN_IMAGE.lstrip("/"))
        info.size, info.mode, info.mtime = len(binary), 0o755, 0
        tar.addfile(info, io.BytesIO(binary))
    layer_bytes = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = {
        "architecture": _architecture(),
        "os": "linux",
        "config": {"Labels": labels(kind="tools", role="uv", uv=version), "Cmd": [PATH_IN_IMAGE, "--version"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": f"jupyter-containers: uv {version}, mounted by build steps"}],
    }
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    config_digest = hashlib.sha256(config_bytes).hexdigest()
    layer_name = diff_id.split(":", 1)[1] + "/layer.tar"
    manifest = [{"Config": f"{config_digest}.json", "RepoTags": [tag], "Layers": [layer_name]}]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in (
            (f"{config_digest}.json", config_bytes),
            (layer_name, layer_bytes),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue(), f"sha256:{config_digest}"


def _binary() -> tuple[Path, tuple[str, int, int]]:
    import uv

    path = Path(uv.find_uv_bin())
    try:
        stat = path.stat()
    except OSError as exc:
        raise BuildError(f"cannot read uv's binary {path}: {exc.strerror or exc}; reinstall the uv package") from None
    return path, (str(path), stat.st_size, stat.st_mtime_ns)


def _archive_of(path: Path, tag: str, version: str) -> tuple[bytes, str]:
    try:
        binary = path.read_bytes()
    except OSError as exc:
        raise BuildError(f"cannot read uv's binary {path}: {exc.strerror or exc}; reinstall the uv package") from None
    return archive(binary, tag, version)


def ensure(
    backend: ContainerBackend, tag: str, version: str, on_event: Callable[[BuildEvent], None] | None = None
) -> str:
    """Make sure the engine's ``tag`` is this uv binary's image (loading it when absent or another binary's);
    called before each build that runs (not for an unchanged one). Returns the image id.

    The id is computed once per process and binary (60 ms: the archive is made and hashed) and only the id is
    kept: the 38 MB archive is made again on the rare load.
    """
    path, key = _binary()
    known = (tag, version) + key
    image_id = _IDS.get(known)
    if image_id is None:
        _, image_id = _archive_of(path, tag, version)
        _IDS[known] = image_id
    if backend.image_id(tag) == image_id:
        return image_id
    if on_event:
        on_event(BuildEvent("info", step="", text=f"loading uv {version} onto the engine as {tag} (once per engine)"))
    data, image_id = _archive_of(path, tag, version)
    backend.load_images(io.BytesIO(data))
    if backend.image_id(tag) != image_id:
        raise BuildError(f"the engine loaded uv's image but {tag} is not {image_id[:19]}; build again")
    return image_id
