"""Push and pull environment images to a team registry, so that a team builds each environment once.

An environment's image goes to ``HOST/REPO/ENV:TAG`` (TAG is the content-addressed tag of the build), its base
image beside it as ``HOST/REPO/ENV:TAG-base``: pulling both gives a colleague the same image ids, so their
builder computes the same tag and finds the image instead of building it. The registry digest of a push is
recorded in ``containers.lock``. Credentials come only from Docker's own configuration (``docker login``,
credential helpers; ``DOCKER_CONFIG`` for another folder): nothing here reads, writes or shows them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..backends.base import BuildEvent
from ..errors import (
    ContainersError,
    NotFoundError,
    RegistryAuthError,
    RegistryError,
    RegistryTlsError,
    RegistryUnavailableError,
    RequestError,
)
from ..images.lock import write_lock_entry
from ..redact import redact
from ..spec.schema import REGISTRY_PATTERN

if TYPE_CHECKING:
    from ..images.builder import EventCallback
    from ..manager import ContainersManager
    from ..spec.model import Environment

_REGISTRY_RE = re.compile(REGISTRY_PATTERN)
ProgressCallback = Callable[[str], None]


@dataclass(frozen=True)
class PushResult:
    environment: str
    reference: str
    digest: str
    base_reference: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "reference": self.reference,
            "digest": self.digest,
            "base_reference": self.base_reference,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class PullResult:
    environment: str
    reference: str
    image: str
    image_id: str
    built_on: str | None
    seconds: float
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "reference": self.reference,
            "image": self.image,
            "image_id": self.image_id,
            "built_on": self.built_on,
            "seconds": round(self.seconds, 3),
            "notes": list(self.notes),
        }


def check_registry(text: str, *, where: str = "--registry") -> str:
    """``HOST[:PORT]/REPO``, unchanged; a RequestError that says what is allowed otherwise."""
    value = str(text).strip().rstrip("/")
    if "://" in value or "@" in value or not _REGISTRY_RE.match(value):
        shown = redact(str(text))
        if "@" in shown:  # USER:PASSWORD@HOST/REPO: never repeat what came before the @
            shown = "…@" + shown.rsplit("@", 1)[1]
        raise RequestError(
            f"{where} {shown[:200]!r} is not a registry repository; write HOST[:PORT]/REPOSITORY such as "
            "registry.example.org/ml or 127.0.0.1:5000/team (no scheme, no credentials: 'docker login HOST' stores "
            "those in Docker's config)"
        )
    return value


def registry_of(manager: ContainersManager, registry: str | None) -> str | None:
    """``registry`` (``--registry`` of build/push/pull), else the manager's (``--registry`` of run/execute,
    ``c.ContainersManager.registry``), else ``registry = "…"`` of the manager's target, else of the spec file's
    top level, else None. (ContainersManager.build does not import this module when none of these is set:
    keep its check in step with this order.)"""
    if registry:
        return check_registry(registry)
    own = getattr(manager, "registry", None)
    if own:
        return check_registry(own, where="c.ContainersManager.registry")
    target = manager.target_spec()
    if target is not None and target.registry:
        return check_registry(target.registry, where=f"{manager.spec_file()}: targets.{target.name}.registry")
    configured = manager.spec().registry
    return check_registry(configured, where=f"{manager.spec_file()}: registry") if configured else None


def required_registry(manager: ContainersManager, registry: str | None) -> str:
    found = registry_of(manager, registry)
    if found is None:
        raise RequestError(
            f'no registry given: pass --registry HOST/REPO, or add registry = "HOST/REPO" at the top of '
            f"{manager.spec_file()} (or in the environment's [targets.NAME])"
        )
    return found


def remote_reference(registry: str, env: str, local_tag: str) -> str:
    """``HOST/REPO/ENV:TAG`` for the local ``repository:TAG`` of an environment image."""
    return f"{registry}/{env}:{local_tag.rsplit(':', 1)[-1]}"


def base_reference(registry: str, env: str, local_tag: str) -> str:
    return remote_reference(registry, env, local_tag) + "-base"


def registry_host(registry: str) -> str:
    return registry.split("/", 1)[0]


def classify(exc: ContainersError, registry: str, doing: str) -> ContainersError:
    """The engine's answer about a registry as one of our precise errors, saying what to change."""
    text = str(exc)
    lowered = text.lower()
    host = registry_host(registry)
    shown = redact(" ".join(text.split()))[:300]
    if any(s in lowered for s in ("unauthorized", "authentication required", "no basic auth credentials", "denied")):
        return RegistryAuthError(
            f"{doing}: the registry {host} refused the credentials it got ({shown}); log in with "
            f"'docker login {host}' (credentials are read from Docker's config.json and its credential helpers, "
            "or from $DOCKER_CONFIG/config.json), then try again"
        )
    if "x509" in lowered or "certificate" in lowered:
        return RegistryTlsError(
            f"{doing}: the engine does not trust the TLS certificate of {host} ({shown}); put the CA certificate "
            f"that signed it at /etc/docker/certs.d/{host}/ca.crt on the engine's host (read on each push and "
            "pull, no restart needed), or fix the certificate's host names"
        )
    if "http response to https client" in lowered:
        return RegistryTlsError(
            f"{doing}: {host} speaks plain HTTP ({shown}); give it TLS, or (only for a registry on a trusted "
            f'network) list it in the engine\'s daemon.json "insecure-registries" and restart dockerd'
        )
    if any(
        s in lowered
        for s in ("connection refused", "no such host", "i/o timeout", "no route to host", "network is unreachable")
    ):
        return RegistryUnavailableError(
            f"{doing}: no registry answers at {host} ({shown}); check the address (--registry, or registry = in "
            "containers.toml) and that the registry runs"
        )
    if isinstance(exc, NotFoundError) or "manifest unknown" in lowered or "not found" in lowered:
        return NotFoundError(f"{doing}: not in the registry {registry} ({shown})")
    if isinstance(exc, RegistryError):
        return exc
    return RegistryError(f"{doing}: {shown}")


def push(
    manager: ContainersManager,
    name: str,
    registry: str | None = None,
    *,
    on_event: EventCallback | None = None,
    on_progress: ProgressCallback | None = None,
) -> PushResult:
    """Build ``name`` if needed, push its image (and its base) to the registry, record the digest in the lock.

    Raises:
        RequestError: no registry; RegistryAuthError, RegistryTlsError, RegistryUnavailableError, RegistryError.
    """
    started = time.perf_counter()
    manager = manager.for_environment(name)  # the environment's own target: its engine and its registry
    target = required_registry(manager, registry)
    build = manager.build(name, on_event=on_event, use_registry=False)
    env = manager.environment(name)
    backend = manager.backend
    lock = build.lock or manager.builder.lock_entry(env)
    remote = remote_reference(target, name, build.image)
    remote_base = base_reference(target, name, build.image)
    backend.reload_credentials()
    with_base = lock is not None and bool(lock.base_image_id) and backend.image_id(lock.base_image_id) is not None
    if not with_base:
        remote_base = ""
        digest = _push_one(manager, build.image_id, remote, on_progress)
    else:
        # The base goes at the same time as the image: its layers are the image's lower ones (the engine uploads
        # each layer once, and a second push of one only checks it), so what it adds is one more push's round
        # trips (auth, layer checks, a manifest), which overlap the image's own instead of following them.
        from concurrent.futures import ThreadPoolExecutor

        assert lock is not None
        with ThreadPoolExecutor(2, thread_name_prefix="jc-push") as pool:
            base_push = pool.submit(_push_one, manager, lock.base_image_id, remote_base, on_progress)
            digest = _push_one(manager, build.image_id, remote, on_progress)
            base_push.result()
    if lock is not None and digest:
        entry = replace(lock, digest=f"{remote.rsplit(':', 1)[0]}@{digest}")
        write_lock_entry(env.spec_dir / "containers.lock", name, entry)
    return PushResult(name, remote, digest, remote_base, time.perf_counter() - started)


def _push_one(manager: ContainersManager, image_id: str, remote: str, on_progress: ProgressCallback | None) -> str:
    backend = manager.backend
    backend.tag_image(image_id, remote)
    try:
        return backend.push(remote, on_progress=on_progress)
    except ContainersError as exc:
        raise classify(exc, remote.rsplit("/", 1)[0], f"pushing {remote}") from None
    finally:
        _untag(manager, remote)


def _untag(manager: ContainersManager, reference: str) -> None:
    # The registry name is only a vehicle: the image stays under its own (content-addressed) tag.
    try:
        manager.backend.remove_image(reference)
    except ContainersError as exc:
        manager.log.debug("could not remove the tag %s: %s", reference, exc)


def local_tag_for(manager: ContainersManager, env: Environment, *, locked: bool = False) -> str | None:
    """The tag a build of ``env`` would have here, without pulling or bootstrapping anything: from the plan when
    the base image is on the engine, else from the lock; None when neither can tell."""
    try:
        return manager.builder.plan(env, locked=locked, fetch=False).tag
    except NotFoundError:
        lock = manager.builder.lock_entry(env)
        return lock.image if lock is not None else None


def pull(
    manager: ContainersManager,
    name: str,
    registry: str | None = None,
    *,
    locked: bool = False,
    on_progress: ProgressCallback | None = None,
    tag: str | None = None,
) -> PullResult:
    """Pull ``name``'s image (and its base, when the engine lacks it) and tag them as a build would.

    Raises:
        NotFoundError: the registry has no image for the environment as it is specified now;
        RequestError: no registry; the Registry* errors.
    """
    started = time.perf_counter()
    manager = manager.for_environment(name)
    target = required_registry(manager, registry)
    env = manager.environment(name)
    backend = manager.backend
    local = tag or local_tag_for(manager, env, locked=locked)
    if local is None:
        raise NotFoundError(
            f"cannot tell which image of {name!r} to pull: its base image is not on this engine and "
            f"{env.spec_dir / 'containers.lock'} has no entry for it; commit the lock with the spec, or build it"
        )
    remote = remote_reference(target, name, local)
    backend.reload_credentials()
    try:
        image_id = backend.pull(remote, on_progress=on_progress)
    except ContainersError as exc:
        raise classify(exc, target, f"pulling {remote}") from None
    backend.tag_image(image_id, local)
    _untag(manager, remote)
    notes = _pull_base(manager, env, target, local, image_id, on_progress)
    created = backend.image_created(local)
    try:
        plan = manager.builder.plan(env, locked=locked, fetch=False)
    except NotFoundError:
        plan = None
    if plan is not None and plan.tag == local:
        lock = manager.builder.lock_entry(env)
        if lock is None or lock.image_id != image_id or lock.spec_hash != plan.spec_hash:
            lock = manager.builder.write_lock(env, plan, image_id)
        digests = [d for d in backend.repo_digests(image_id) if d.startswith(remote.rsplit(":", 1)[0] + "@")]
        if digests and lock.digest != digests[0]:
            write_lock_entry(env.spec_dir / "containers.lock", name, replace(lock, digest=digests[0]))
    elif plan is not None:
        notes.append(
            f"this engine would build {name!r} as {plan.tag}, not {local}: its base image differs from the one the "
            "image was built on, so 'build' would build again"
        )
    return PullResult(name, remote, local, image_id, created, time.perf_counter() - started, tuple(notes))


def _pull_base(
    manager: ContainersManager,
    env: Environment,
    registry: str,
    local: str,
    image_id: str,
    on_progress: ProgressCallback | None,
) -> list[str]:
    """The base image the environment image was built on, pulled and tagged as the builder names it, when the
    engine lacks it: then the builder computes the same tag here as where the image was built."""
    backend = manager.backend
    labels = backend.image_labels(image_id)
    base = labels.get("io.jupyter.containers.base")
    if not base:
        return []
    if backend.image_id(base) is not None:
        return []
    remote = base_reference(registry, env.name, local)
    try:
        base_id = backend.pull(remote, on_progress=on_progress)
    except ContainersError as exc:
        return [f"its base image {base} could not be pulled from {remote} ({classify(exc, registry, 'pulling')})"]
    backend.tag_image(base_id, base)
    _untag(manager, remote)
    return []


def pull_for_build(
    manager: ContainersManager,
    env: Environment,
    registry: str | None,
    *,
    locked: bool = False,
    on_event: EventCallback | None = None,
) -> PullResult | None:
    """Before a build: with a registry configured, pull the spec's image from it instead of building.

    None when there is no registry, the engine already has the image (the build is a no-op then), the registry
    lacks it (the build goes on; a team member's push fills it) or cannot be reached (said as a warning).
    Wrong credentials or an untrusted certificate are errors: they need fixing, not a silent local build.
    """
    target = registry_of(manager, registry)
    if target is None:
        return None
    local = local_tag_for(manager, env, locked=locked)
    if local is None or manager.backend.image_id(local) is not None:
        return None

    def say(text: str) -> None:
        if on_event:
            on_event(BuildEvent("info", step="", text=text))

    try:
        result = pull(manager, env.name, target, locked=locked, tag=local)
    except NotFoundError:
        say(f"{remote_reference(target, env.name, local)} is not in the registry yet: building it here")
        return None
    except RegistryUnavailableError as exc:
        say(f"warning: {exc}; building here instead")
        return None
    built_on = f", built on {result.built_on[:19].replace('T', ' ')} UTC" if result.built_on else ""
    say(f"pulled {result.reference}{built_on}: nothing to build")
    for note in result.notes:
        say(f"note: {note}")
    return result
