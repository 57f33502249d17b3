"""Spec → image: content-addressed tags, cache lookup, deduplicated builds, streamed events, lock.

The tag is a hash of everything that decides the image's contents (the rendered Dockerfile, the context
files it installs from, the base image id, the uv and builder versions). If the engine already has that
tag, nothing is built: that check is a few engine API calls, which is what makes rebuilding an unchanged
spec take milliseconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from traitlets import Bool, Instance, Int, List, Unicode
from traitlets.config import LoggingConfigurable

from .. import __version__
from ..backends.base import LABEL_PREFIX, BuildEvent, ContainerBackend, RunRequest, labels, owner_labels
from ..errors import BackendError, BuildError, EngineRefusedError, NotFoundError, SpecError
from ..paths import file_lock
from ..redact import redact
from ..spec.model import Environment, Resources
from . import hostconfig, mounted
from .dockerfile import (
    IMAGE_ENV,
    UV_CACHE_ID,
    BuildInputs,
    frame_inputs,
    render,
    render_delta,
    resolves,
    uv_index_config,
)
from .lock import PROBE_SCRIPT, LockEntry, read_lock, write_lock_entry

if TYPE_CHECKING:  # imported where a context is written: an unchanged build writes none
    import tarfile

EventCallback = Callable[[BuildEvent], None]


@dataclass(frozen=True)
class BuildPlan:
    """Everything decided before talking to the builder: the Dockerfile, its files and the tag."""

    environment: Environment
    base: str
    base_image_id: str
    dockerfile: str
    files: Mapping[str, bytes]
    spec_hash: str
    tag: str
    locked: bool
    ca_bundle: Path | None
    buildargs: Mapping[str, str] = field(default_factory=dict)
    #: What the Dockerfile was rendered from (an incremental build renders its own Dockerfile from them).
    inputs: BuildInputs | None = None
    #: Hash of everything but the requirement files and the pip list (see Builder.frame); "" when an
    #: incremental build on top of a previous image could not install what a cold build installs.
    frame: str = ""


@dataclass(frozen=True)
class BuildResult:
    """What a build (or the finding that none was needed) gave: the tagged image, whether it was built or pulled."""

    environment: str
    image: str
    image_id: str
    built: bool
    seconds: float
    lock: LockEntry | None = None
    #: The registry reference the image was pulled from instead of building it (share/registry.py), if any.
    pulled: str = ""
    #: The image id an incremental build synced (one layer on top of it), "" for a full build.
    incremental_from: str = ""

    def to_dict(self) -> dict:
        out = {
            "environment": self.environment,
            "image": self.image,
            "image_id": self.image_id,
            "built": self.built,
            "seconds": round(self.seconds, 4),
        }
        if self.pulled:
            out["pulled"] = self.pulled
        if self.incremental_from:
            out["incremental_from"] = self.incremental_from
        return out


class Builder(LoggingConfigurable):
    """Builds environment images on a backend."""

    backend = Instance(ContainerBackend)

    default_base = Unicode(
        "python:3.11-slim",
        config=True,
        help="Base image for environments that name none. Used when the engine has it or can pull it.",
    )
    offline_base = Unicode(
        "jupyter-containers/base:bookworm",
        config=True,
        help="Base bootstrapped from Debian packages when default_base cannot be pulled (air-gapped engines).",
    )
    bootstrap_offline_base = Bool(
        True, config=True, help="Bootstrap offline_base with debootstrap when no registry can be reached."
    )
    image_repository = Unicode(
        "jupyter-containers/{env}",
        config=True,
        help="Repository of environment images; {env} is the environment name. The tag is the spec hash.",
    )
    inject_ca_bundle = Bool(
        True, config=True, help="Trust the host's CA bundle during builds (TLS-intercepting proxies)."
    )
    ca_bundle = Unicode(
        None, allow_none=True, config=True, help="CA bundle to inject; unset: the one the host's tools use."
    )
    inject_proxy = Bool(True, config=True, help="Pass the host's HTTP(S)_PROXY/NO_PROXY to builds (not stored).")
    inject_index = Bool(True, config=True, help="Mirror the host's pip index settings (http(s) only) into builds.")
    serialize_builds = Bool(
        True,
        config=True,
        help="Run one build at a time per engine (host-wide lock). The BuildKit of Docker 20.10 can panic and "
        "take the daemon down ('failed to get edge', moby/moby#42414) when parallel builds share steps.",
    )
    compile_bytecode = Bool(
        True,
        config=True,
        help="Compile .pyc files at build time. Off builds ~2x faster but every kernel start then imports "
        "numpy/pandas ~3x slower (measured in docs/performance.md): worth it only for throw-away CI images.",
    )
    keep_uv = Bool(
        False,
        config=True,
        help="Keep uv in the images (+38 MB each) so that %uv pip install works in container kernels. Off: uv "
        "is used at build time only, and %pip (always there) installs at run time.",
    )
    allowed_reference_roots = List(
        Unicode(),
        config=True,
        help="Host folders outside a spec file's folder that the files it names (requirements, and the -r/-c "
        "files they include) may come from. None by default: a spec refers only to files inside its own folder, "
        "so a spec from elsewhere cannot copy host files into an image or quote them in errors.",
    )
    python_downloads = Bool(
        True,
        config=True,
        help="Let uv download a Python that the base image lacks (python-build-standalone, from github.com: needs "
        "internet access). False: such a build fails before it starts, naming the Pythons the base has; use it on "
        "machines that cannot reach GitHub (see docs/air-gapped.md).",
    )
    uv_cache_id = Unicode(
        UV_CACHE_ID,
        config=True,
        help="BuildKit cache mount holding uv's download cache, shared by builds so small changes rebuild fast.",
    )

    incremental_builds = Int(
        8,
        config=True,
        help="How many edits of an environment's requirement files or pip list in a row are built as one layer on "
        "top of its previous image (that syncs it to the edited spec: the same packages as a cold build, in about "
        "a second) before a full build starts again from the base (each such layer keeps the replaced files of "
        "the layers below, so the image grows a little). 0: always build every layer.",
    )

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        #: base image id → the Python versions it has (None: unknown); see base_pythons
        self._pythons: dict[str, list[str] | None] = {}

    # ------------------------------------------------------------------ planning
    def plan(
        self, env: Environment, *, locked: bool = False, on_event: EventCallback | None = None, fetch: bool = True
    ) -> BuildPlan:
        """Resolve the base, render the Dockerfile and compute the content-addressed tag.

        With ``fetch=False`` nothing is pulled or bootstrapped: a missing base raises NotFoundError.
        """
        base, base_id = self.resolve_base(env, on_event=on_event, fetch=fetch)
        inputs, ca, index = self._inputs(env, base, locked)
        dockerfile, files = render(env, inputs)
        if index is not None:
            files[".jc/uv.toml"] = index
        spec_hash = content_hash(dockerfile, files, inputs, base_id)
        tag = f"{self.image_repository.format(env=env.name)}:{spec_hash[:16]}"
        buildargs = hostconfig.proxy_build_args() if self.inject_proxy else {}
        frame = self.frame(env, inputs, index, base_id)
        return BuildPlan(env, base, base_id, dockerfile, files, spec_hash, tag, locked, ca, buildargs, inputs, frame)

    def frame(self, env: Environment, inputs: BuildInputs, index: bytes | None, base_id: str) -> str:
        """The hash of everything that shapes the image except the requirement files and the pip list.

        Two builds with the same frame differ only in the packages their install layers synced the virtualenv
        to, so the later one can be built as one sync layer on top of the earlier image (render_delta). ""
        when that would not give what a cold build gives: locked or hash-checking installs (no resolution),
        post-build steps (they ran on the old packages), or a spec ``env`` that overrides the image's own ENV
        names (a sync could not run without it, as the install layers of a cold build do).
        """
        if not resolves(inputs) or env.post_build or env.post_build_root or set(env.env) & set(IMAGE_ENV):
            return ""
        dockerfile, files = render(env, frame_inputs(inputs))
        if index is not None:
            files[".jc/uv.toml"] = index
        return _digest(f"kernel={inputs.kernel}", dockerfile, files, inputs, base_id)[:32]

    def previous_image(self, plan: BuildPlan) -> tuple[str, str, int] | None:
        """``(tag, image id, depth)`` of the environment's last build when the plan can be built on top of it.

        The last build is the one the lock records; it qualifies when the engine still has it under that tag,
        it was rendered from the same frame, and fewer than ``incremental_builds`` incremental layers lie on it.
        """
        if not plan.frame or self.incremental_builds <= 0 or plan.locked:
            return None
        entry = self.lock_entry(plan.environment)
        if entry is None or self.backend.image_id(entry.image) != entry.image_id:
            return None
        try:
            image_labels = self.backend.image_labels(entry.image_id)
        except NotFoundError:
            return None
        if image_labels.get(f"{LABEL_PREFIX}.frame") != plan.frame:
            return None
        try:
            depth = int(image_labels.get(f"{LABEL_PREFIX}.incremental-depth") or 0)
        except ValueError:
            return None
        if depth >= self.incremental_builds:
            return None
        return entry.image, entry.image_id, depth

    def resolve_base(
        self, env: Environment, *, on_event: EventCallback | None = None, fetch: bool = True
    ) -> tuple[str, str]:
        """The base reference and its image id, pulling or bootstrapping the default base when needed."""
        if env.base:
            image_id = self.backend.image_id(env.base)
            if image_id is None:
                if not fetch:
                    raise NotFoundError(f"base image {env.base!r} is not on the engine yet")
                image_id = self._pull(env.base)
            return env.base, image_id
        image_id = self.backend.image_id(self.default_base)
        if image_id:
            return self.default_base, image_id
        image_id = self.backend.image_id(self.offline_base)
        if image_id:
            return self.offline_base, image_id
        if not fetch:
            raise NotFoundError(f"no default base image ({self.default_base} or {self.offline_base}) on the engine yet")
        from ..provision.base_image import ensure_base_image

        def say(text: str) -> None:
            self.log.info(text)
            if on_event:
                on_event(BuildEvent("info", step="", text=text))

        reference = ensure_base_image(
            self.default_base,
            backend=self.backend,
            offline_tag=self.offline_base,
            allow_bootstrap=self.bootstrap_offline_base,
            log=say,
        )
        image_id = self.backend.image_id(reference)
        if image_id is None:  # pragma: no cover - ensure_base_image guarantees it
            raise BackendError(f"base image {reference} vanished right after it was prepared; retry")
        return reference, image_id

    def _pull(self, reference: str) -> str:
        try:
            return self.backend.pull(reference)
        except (NotFoundError, EngineRefusedError) as exc:  # any registry failure means the same to the user
            raise EngineRefusedError(
                f"base image {reference!r} is not on the engine and could not be pulled ({str(exc)[:200]}); "
                "pull or 'docker load' it, or omit 'base' to use the default base"
            ) from None

    def _inputs(self, env: Environment, base: str, locked: bool) -> tuple[BuildInputs, Path | None, bytes | None]:
        from ..spec.files import resolve_roots
        from ..spec.parse import environment_key

        requirements: list[str] = []
        constraints: list[str] = []
        # Confined again here, not only when the spec was parsed: the files may have changed since.
        roots = resolve_roots(env.spec_dir, self.allowed_reference_roots)
        for i, rel in enumerate(env.requirements):
            from ..spec.requirements import read_requirements  # here: most specs list packages, not files

            key = environment_key(env, "requirements", i)
            parsed = read_requirements(env.spec_dir / rel, roots=roots, reference=rel, file=env.source, key=key)
            requirements.extend(parsed.options)
            requirements.extend(parsed.requirements)
            constraints.extend(parsed.constraints)
        locked_packages = None
        apt = list(env.apt)
        if locked:
            entry = self.lock_entry(env)
            if entry is None:
                lock_path = env.spec_dir / "containers.lock"
                raise SpecError(
                    f"no lock for environment {env.name!r}; build it once without --locked to create it",
                    file=lock_path,
                )
            locked_packages = list(entry.packages)
            pinned = {line.split("=", 1)[0]: line for line in entry.apt}
            apt = [pinned.get(p.split("=", 1)[0], p) for p in env.apt]
        folders, wheels = self._find_links(env, roots)
        ca = self._ca_bundle()
        index = uv_index_config(hostconfig.pip_index_settings()) if self.inject_index else None
        inputs = BuildInputs(
            base=base,
            requirements=requirements,
            constraints=constraints,
            pip=list(env.pip),
            locked=locked_packages,
            apt=apt,
            has_ca=ca is not None,
            has_index_config=index is not None,
            uv_cache_id=self.uv_cache_id,
            compile_bytecode=self.compile_bytecode,
            keep_uv=self.keep_uv,
            uv_image=mounted.uv_tag(_uv_version()),
            kernel=not _brings_ipykernel([*requirements, *env.pip, *(locked_packages or [])]),
            find_links=folders,
            wheels=wheels,
        )
        return inputs, ca, index

    def _find_links(self, env: Environment, roots: tuple[Path, ...]) -> tuple[list[str], list[tuple[str, str, Path]]]:
        """The environment's wheel folders (each named by a digest of its wheels) and their wheels.

        Read again at every plan, not only when the spec was parsed: a wheel added, removed or rebuilt since is a
        new tag (its name and sha256 are part of it), an unchanged folder the same tag.
        """
        from ..spec.files import find_links_wheels
        from ..spec.parse import environment_key

        folders: list[str] = []
        wheels: list[tuple[str, str, Path]] = []
        for i, rel in enumerate(env.find_links):
            key = environment_key(env, "find_links", i)
            found = find_links_wheels(rel, base=env.spec_dir, roots=roots, file=env.source, key=key)
            hashed = [(name, wheel_sha256(path, file=env.source, key=key), path) for name, path in found]
            folder = hashlib.sha256("".join(f"{name}\0{sha}\0" for name, sha, _ in hashed).encode()).hexdigest()[:16]
            if folder in folders:  # two entries with the same wheels: offered once
                continue
            folders.append(folder)
            wheels.extend((f".jc/find-links/{folder}/{name}", sha, path) for name, sha, path in hashed)
        return folders, wheels

    def _ca_bundle(self) -> Path | None:
        if not self.inject_ca_bundle:
            return None
        if self.ca_bundle:
            path = Path(self.ca_bundle)
            if not path.is_file():
                raise SpecError(f"c.Builder.ca_bundle = {self.ca_bundle!r} is not a file; fix or unset it")
            return path
        return hostconfig.find_ca_bundle()

    def status(self, env: Environment) -> dict[str, object]:
        """``built`` (the current tag exists), ``stale`` (the spec changed since its last build, whose image
        is still here) or ``never built``. Never pulls, bootstraps or builds: safe for listings.

        The last build is the one ``containers.lock`` records next to the spec: identical specs in other
        folders share images, so only the lock says what *this* project built; image labels are the
        fallback for projects without a lock.
        """
        try:
            plan = self.plan(env, fetch=False)
        except NotFoundError:
            plan = None
        if plan is not None:
            image_id = self.backend.image_id(plan.tag)
            if image_id:
                return {"status": "built", "image": plan.tag, "image_id": image_id}
        lock = self.lock_entry(env)
        if lock is not None and self.backend.image_id(lock.image_id):
            return {"status": "stale", "image": lock.image, "image_id": lock.image_id}
        older = [
            image
            for image in self.backend.list_images()
            if image.label("env") == env.name and image.label("spec-file") == str(env.source or "")
        ]
        if older:
            newest = max(older, key=lambda i: i.created or 0)
            return {"status": "stale", "image": (newest.tags or (None,))[0], "image_id": newest.id}
        return {"status": "never built", "image": plan.tag if plan else None, "image_id": None}

    # ------------------------------------------------------------------ building
    def build(
        self,
        env: Environment,
        *,
        locked: bool = False,
        on_event: EventCallback | None = None,
        no_cache: bool = False,
        relock: bool = False,
    ) -> BuildResult:
        """Build the environment's image unless the engine already has it; write the lock either way.

        ``no_cache`` rebuilds every layer (but still skips the build when the tag exists); ``relock``
        rewrites the lock from the image even when it is up to date.
        """
        started = time.perf_counter()
        plan = self.plan(env, locked=locked, on_event=on_event)
        image_id = self.backend.image_id(plan.tag)
        built = False
        incremental_from = ""
        if image_id is None:
            self.check_python(plan, on_event)
            waiting = BuildEvent("info", step="", text=f"waiting for a concurrent build of {plan.tag}")
            with file_lock(f"build:{plan.tag}", on_wait=lambda: on_event and on_event(waiting)):
                # Another process may have built it while we waited for the lock.
                image_id = self.backend.image_id(plan.tag)
                if image_id is None:
                    with self.engine_slot(on_event):
                        image_id, incremental_from = self._build(plan, on_event, no_cache)
                    built = True
                elif on_event:
                    on_event(BuildEvent("info", step="", text=f"{plan.tag} was built by a concurrent build"))
        lock = self.lock_entry(env)
        if relock or (not locked and (lock is None or lock.spec_hash != plan.spec_hash or lock.image_id != image_id)):
            lock = self.write_lock(env, plan, image_id)
        return BuildResult(
            env.name, plan.tag, image_id, built, time.perf_counter() - started, lock, incremental_from=incremental_from
        )

    @contextlib.contextmanager
    def engine_slot(self, on_event: EventCallback | None = None) -> Iterator[None]:
        """One build at a time on this engine (see serialize_builds); for any build, ours or not."""
        if not self.serialize_builds:
            yield
            return
        key = f"engine-build:{self.backend.address}"
        with file_lock(
            key,
            on_wait=lambda: (
                on_event
                and on_event(BuildEvent("info", step="", text="waiting for another build on this engine to finish"))
            ),
        ):
            yield

    def _build(self, plan: BuildPlan, on_event: EventCallback | None, no_cache: bool = False) -> tuple[str, str]:
        """Build the plan: one sync layer on its previous image when that qualifies, else every layer.

        Returns ``(image id, the previous image id it was built on or "")``. An incremental build that fails
        is retried as a full build, so its errors are always those of the spec itself.
        """
        self._ensure_mounted(plan, on_event)
        previous = None if no_cache else self.previous_image(plan)
        if previous is not None and plan.inputs is not None:
            tag, previous_id, depth = previous
            if on_event:
                on_event(BuildEvent("info", step="", text=f"incremental build: syncing {tag} to the edited spec"))
            dockerfile, files = render_delta(plan.environment, plan.inputs, tag)
            if ".jc/uv.toml" in plan.files:
                files[".jc/uv.toml"] = plan.files[".jc/uv.toml"]
            extra = {"incremental_from": previous_id, "incremental_depth": str(depth + 1)}
            try:
                return self._run_build(plan, self.context_tar(plan, dockerfile, files), extra, on_event), previous_id
            except BuildError as exc:
                self.log.info("incremental build of %s failed (%s); building every layer", plan.tag, exc)
                if on_event:
                    on_event(BuildEvent("info", step="", text="the incremental build failed; building every layer"))
        context = self.context_tar(plan)
        return self._run_build(plan, context, {"incremental_depth": "0"}, on_event, no_cache), ""

    def _ensure_mounted(self, plan: BuildPlan, on_event: EventCallback | None) -> None:
        """The images the plan's steps mount (uv, each find_links folder), loaded onto the engine if it lacks
        them (:mod:`.mounted`)."""
        mounted.ensure_uv(self.backend, _uv_version(), on_event)
        if plan.inputs is not None:
            for folder in plan.inputs.find_links:
                mounted.ensure_wheels(self.backend, folder, plan.inputs.folder_wheels(folder), on_event)

    def _run_build(
        self,
        plan: BuildPlan,
        context: bytes,
        extra_labels: Mapping[str, str],
        on_event: EventCallback | None,
        no_cache: bool = False,
    ) -> str:
        folders = plan.inputs.find_links if plan.inputs is not None else ()
        image_labels = labels(
            # Images inherit their base's labels: say explicitly that this one is an environment.
            kind="environment",
            env=plan.environment.name,
            spec_hash=plan.spec_hash,
            spec_file=str(plan.environment.source or ""),
            base=plan.base,
            builder=__version__,
            locked="true" if plan.locked else "false",
            # Who built it first: prune removes only the user's own images (identical specs share one image).
            owner_uid=str(os.getuid()),
            frame=plan.frame,
            # the find_links folders' images it was built from: prune removes those no image names any more
            **({"wheels": ",".join(folders)} if folders else {}),
            **extra_labels,
        )
        events = self.backend.build(
            context, tag=plan.tag, labels=image_labels, buildargs=plan.buildargs, no_cache=no_cache
        )
        try:
            for event in events:
                if on_event:
                    on_event(event)
        except BuildError as exc:
            raise self._explained(exc, plan) from None
        image_id = self.backend.image_id(plan.tag)
        if image_id is None:
            raise BuildError(f"the engine reported success but has no image {plan.tag}; retry the build")
        return image_id

    def context_tar(
        self, plan: BuildPlan, dockerfile: str | None = None, files: Mapping[str, bytes] | None = None
    ) -> bytes:
        """The build context: USTAR (BuildKit rejects PAX headers), fixed metadata, sorted names.

        ``dockerfile``/``files`` replace the plan's (an incremental build's own Dockerfile).
        """
        import tarfile

        dockerfile = plan.dockerfile if dockerfile is None else dockerfile
        files = plan.files if files is None else files
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            _add_bytes(tar, "Dockerfile", dockerfile.encode())
            for name in sorted(files):
                _add_bytes(tar, name, files[name], mode=0o755 if "post_build" in name else 0o644)
            if plan.ca_bundle is not None:
                _add_bytes(tar, ".jc/ca-certificates.crt", plan.ca_bundle.read_bytes())
        return buf.getvalue()

    # ------------------------------------------------------------------ python
    def base_pythons(self, base: str, base_image_id: str) -> list[str] | None:
        """The Python versions on the base image's PATH (``python3`` and every ``python3.X``), probed once per
        base image id in a no-network container; None when the probe cannot run (no python3 there)."""
        if base_image_id in self._pythons:
            return self._pythons[base_image_id]
        out = bytearray()
        request = RunRequest(
            image=base,
            command=["-c", _PYTHONS_PROBE],
            entrypoint=["python3"],
            resources=Resources(network=False, memory=256 << 20, timeout=60),
            labels=labels(role="python-probe", **owner_labels()),
        )
        try:
            result = self.backend.run(request, stdout=out.extend, stderr=lambda _data: None)
            found = json.loads(out.decode()) if result.exit_code == 0 else None
        except (BackendError, ValueError) as exc:
            self.log.debug("could not list the Pythons of %s: %s", base, exc)
            found = None
        versions = sorted(found, key=_version_key) if isinstance(found, list) else None
        self._pythons[base_image_id] = versions
        return versions

    def check_python(self, plan: BuildPlan, on_event: EventCallback | None = None) -> None:
        """Say before building where the environment's Python comes from when the base image lacks it.

        uv uses a matching Python of the base and otherwise downloads one from GitHub, which fails (after a
        while, with a network error) on machines that cannot reach it. With ``python_downloads`` off that
        case is an error here, before anything is built.
        """
        wanted = plan.environment.python
        if not wanted:
            return
        found = self.base_pythons(plan.base, plan.base_image_id)
        if found is None or any(_python_matches(wanted, version) for version in found):
            return
        message = self._missing_python(plan, found)
        if not self.python_downloads:
            raise BuildError(f"{message}; c.Builder.python_downloads is off, so it will not be downloaded")
        text = (
            f"{message}: uv will download Python {wanted} (python-build-standalone, from github.com) during the "
            "build, which needs internet access"
        )
        self.log.warning(text)
        if on_event:
            on_event(BuildEvent("info", step="", text=f"warning: {text}"))

    def _missing_python(self, plan: BuildPlan, found: list[str]) -> str:
        wanted = plan.environment.python or ""
        minor = ".".join(wanted.split(".")[:2])
        have = "Python " + ", ".join(found) if found else "no Python"
        where = f"environment {plan.environment.name!r}"
        if plan.environment.source is not None:
            where += f" ({plan.environment.source}: environments.{plan.environment.name}.python)"
        closest = f'python = "{".".join(found[-1].split(".")[:2])}" (the base\'s), ' if found else ""
        return (
            f"{where} asks for Python {wanted}, but its base image {plan.base} has {have}; to build without "
            f'downloading, use a base image that has it (base = "python:{minor}-slim", pulled or loaded with '
            f"'docker load' onto the engine), {closest}or leave python unset; see docs/air-gapped.md"
        )

    def _explained(self, exc: BuildError, plan: BuildPlan) -> BuildError:
        """A failed build's error, with what to do for the failures our own layout causes."""
        step = exc.step or ""
        log = "\n".join(exc.log_tail)
        message = str(exc).split("\n  failing step:", 1)[0].split("\n  last lines of its log:", 1)[0]
        hint = None
        if " venv " in step and plan.environment.python and ("download" in log.lower() or "github" in log):
            found = self._pythons.get(plan.base_image_id)
            hint = (
                self._missing_python(plan, found or [])
                if found is not None
                else (
                    f"uv could not download Python {plan.environment.python}, which the base image {plan.base} lacks; "
                    "use a base image that has it, see docs/air-gapped.md"
                )
            )
        elif (
            "post_build_" in step
            and "post_build_root_" not in step
            and ("permission denied" in log.lower() or "are you root" in log.lower())
        ):
            hint = (
                f"post_build steps run as the environment's user (uid 1000, HOME=/home/jovyan), not as root; "
                f"move steps that need root to post_build_root in [environments.{plan.environment.name}] "
                "(system packages: apt)"
            )
        if hint is None:
            return exc
        return BuildError(f"{message}; {hint}", step=exc.step, log_tail=exc.log_tail)

    # ------------------------------------------------------------------ lock
    def lock_entry(self, env: Environment) -> LockEntry | None:
        return read_lock(env.spec_dir / "containers.lock").get(env.name)

    def write_lock(self, env: Environment, plan: BuildPlan, image_id: str) -> LockEntry:
        """Record what the image really holds, probed by running it (no network, non-root)."""
        out = bytearray()
        err = bytearray()
        apt_names = [p.split("=", 1)[0] for p in env.apt]
        request = RunRequest(
            image=plan.tag,
            command=["python", "-c", PROBE_SCRIPT, *apt_names],
            resources=Resources(network=False, memory=512 << 20, timeout=120),
            labels=labels(env=env.name, role="lock-probe", **owner_labels()),
        )
        result = self.backend.run(request, stdout=out.extend, stderr=err.extend)
        if result.exit_code != 0:
            raise BuildError(
                f"could not list the packages installed in {plan.tag} (exit code {result.exit_code})",
                log_tail=err.decode("utf-8", "replace").splitlines()[-10:],
            )
        probe = json.loads(out.decode())
        entry = LockEntry(
            spec_hash=plan.spec_hash,
            image=plan.tag,
            image_id=image_id,
            base=plan.base,
            base_image_id=plan.base_image_id,
            python=probe["python"],
            packages=tuple(redact(p) for p in probe["packages"]),
            apt=tuple(probe["apt"]),
            builder=__version__,
        )
        write_lock_entry(env.spec_dir / "containers.lock", env.name, entry)
        return entry


_PYTHONS_PROBE = """
import json, os, re, subprocess, sys
found = {"%d.%d.%d" % sys.version_info[:3]}
for folder in os.environ.get("PATH", "").split(os.pathsep):
    try:
        names = os.listdir(folder)
    except OSError:
        continue
    for name in names:
        if re.fullmatch(r"python3\\.\\d+", name):
            try:
                out = subprocess.run([os.path.join(folder, name), "-c", "import sys; print('%d.%d.%d' % "
                                      "sys.version_info[:3])"], capture_output=True, text=True, timeout=20).stdout
            except (OSError, subprocess.SubprocessError):
                continue
            if out.strip():
                found.add(out.strip())
print(json.dumps(sorted(found)))
"""


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def _python_matches(wanted: str, version: str) -> bool:
    """``3.11`` matches ``3.11.2``; ``3.11.2`` only itself (as uv matches a request)."""
    want, have = _version_key(wanted), _version_key(version)
    return have[: len(want)] == want


def _brings_ipykernel(lines: list[str]) -> bool:
    from ..spec.parse import plain_requirement_name

    for line in lines:
        if line.startswith("-"):
            continue
        text = line.split(" --", 1)[0]
        name = plain_requirement_name(text)  # most lines: no import of packaging (see there)
        if name is not None:
            if name == "ipykernel":
                return True
            continue
        from packaging.requirements import InvalidRequirement, Requirement
        from packaging.utils import canonicalize_name

        try:
            if canonicalize_name(Requirement(text).name) == "ipykernel":
                return True
        except InvalidRequirement:
            continue
    return False


def content_hash(dockerfile: str, files: Mapping[str, bytes], inputs: BuildInputs, base_id: str) -> str:
    """The spec hash (the tag is its first 16 digits): the rendered Dockerfile, its context files and the wheels
    of its ``find_links`` folders (names and sha256), the base image id, the builder and uv versions."""
    return _digest("Dockerfile", dockerfile, files, inputs, base_id)


def _digest(kind: str, dockerfile: str, files: Mapping[str, bytes], inputs: BuildInputs, base_id: str) -> str:
    """The sha256 of a rendered Dockerfile with its context files and wheels, the base image id and the builder
    and uv versions: the spec hash and the frame (:meth:`Builder.frame`) hash the same parts, ``kind`` (a part of
    its own, after the base) telling them apart. Their order and spelling are part of every existing tag."""
    digest = hashlib.sha256()
    for part in (
        f"builder={__version__}",
        f"uv={_uv_version()}",
        f"base={base_id}",
        kind,
        dockerfile,
        *[f"{name}:{hashlib.sha256(files[name]).hexdigest()}" for name in sorted(files)],
        # the wheels of find_links folders: their context names and sha256 (none without)
        *[f"wheel:{name}:{sha}" for name, sha, _ in inputs.wheels],
    ):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()


#: ``(path, device, inode, size, mtime, ctime)`` → sha256: a wheel is hashed once per process while unchanged.
_WHEEL_HASHES: dict[tuple[str, int, int, int, int, int], str] = {}


def wheel_sha256(path: Path, *, file: object, key: str) -> str:
    """The sha256 of a wheel, from a memo (in process, then in the cache folder) while its inode, size, mtime and
    ctime are those it was hashed at: hashing PyTorch's 190 MB wheel takes 0.7-2 s, which every plan (an unchanged
    ``build``, a status listing) would pay. The ctime changes with every write and cannot be set back. A bundle
    (share/bundle.py) records the same sha256 for the wheels it carries."""
    try:
        info = path.stat()
        memo = (str(path), info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
        if memo in _WHEEL_HASHES:
            return _WHEEL_HASHES[memo]
        entry = _hash_cache_entry(memo)
        kept = _kept_hash(entry)
        if kept is not None:
            _WHEEL_HASHES[memo] = kept
            return kept
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        # Kept only for a file unchanged for a while: timestamps have a granularity of milliseconds, so a file
        # rewritten just now at the same size could show the same times again (git's "racy" case).
        if time.time_ns() - max(info.st_mtime_ns, info.st_ctime_ns) > 2_000_000_000:
            _WHEEL_HASHES[memo] = digest.hexdigest()
            _keep_hash(entry, digest.hexdigest())
        return digest.hexdigest()
    except OSError as exc:
        raise SpecError(f"cannot read the wheel {path.name!r}: {exc.strerror or exc}", file=file, key=key) from None


def _hash_cache_entry(memo: tuple[object, ...]) -> Path | None:
    """Where the hash of a wheel in the state ``memo`` is kept: a folder of this user's that nobody else can
    write (else None: nothing is kept or read)."""
    from ..spec.files import private_cache_folder

    folder = private_cache_folder("wheel-hashes")
    return folder / hashlib.sha256(repr(memo).encode()).hexdigest()[:40] if folder is not None else None


def _kept_hash(entry: Path | None) -> str | None:
    try:
        text = entry.read_text(encoding="ascii").strip() if entry is not None else ""
    except (OSError, UnicodeDecodeError):
        return None
    return text if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else None


def _keep_hash(entry: Path | None, sha: str) -> None:
    if entry is None:
        return
    from .lock import atomic_write

    try:
        atomic_write(entry, sha + "\n")
    except OSError:
        pass


class HashingReader:
    """A file read by tarfile while its sha256 is computed, so that an archive (a build context, a bundle) holds
    the bytes that were hashed."""

    def __init__(self, fh: io.BufferedReader) -> None:
        self.fh = fh
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.fh.read(size)
        self.digest.update(data)
        return data


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    import tarfile

    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


_UV_VERSION: str | None = None


def _uv_version() -> str:
    global _UV_VERSION
    if _UV_VERSION is None:
        _UV_VERSION = _uv_dist_version()
        if _UV_VERSION is None:
            from importlib.metadata import version

            _UV_VERSION = version("uv")
    return _UV_VERSION


def _uv_dist_version() -> str | None:
    """uv's version from the ``uv-*.dist-info/METADATA`` beside the ``uv`` package (the one whose binary builds
    use), without importing importlib.metadata: that import (with the email parser it uses) and its search of
    ``sys.path`` were 12 ms of an unchanged ``jupyter-containers build``. None, for importlib.metadata to
    answer, whenever it is not that simple (no such package folder, several dist-infos, no Version line)."""
    import importlib.util

    spec = importlib.util.find_spec("uv")
    if spec is None or not spec.origin:
        return None
    found = list(Path(spec.origin).parent.parent.glob("uv-*.dist-info"))
    if len(found) != 1:
        return None
    try:
        with open(found[0] / "METADATA", encoding="utf-8") as metadata:
            for line in metadata:
                if not line.strip():
                    break  # the end of the headers
                key, sep, value = line.partition(":")
                if sep and key.strip().lower() == "version":
                    return value.strip() or None
    except OSError:
        pass
    return None
