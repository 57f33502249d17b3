"""One root error with precise subclasses, so every front end can map them in one place.

Each message is written for the person at the keyboard: it names the file, field or value at fault
and says what to change.
"""

from __future__ import annotations


class ContainersError(Exception):
    """Root of every error jupyter-containers raises on purpose."""


class SpecError(ContainersError, ValueError):
    """A spec, requirements, lock or import source is invalid.

    ``file`` and ``key`` locate the problem so that front ends (CLI, REST) can point at it.
    """

    def __init__(self, message: str, *, file: object = None, key: str | None = None):
        self.file = str(file) if file is not None else None
        self.key = key
        prefix = ""
        if self.file:
            prefix = f"{self.file}: "
        if key:
            prefix += f"{key}: "
        super().__init__(prefix + message)


class SpecNotFoundError(SpecError):
    """No spec file, or no environment of that name in it."""


class BuildError(ContainersError):
    """An image build failed; ``step`` is the Dockerfile step and ``log_tail`` its last lines."""

    def __init__(self, message: str, *, step: str | None = None, log_tail: list[str] | None = None):
        self.step = step
        self.log_tail = list(log_tail or [])
        text = message
        if step:
            text += f"\n  failing step: {step}"
        if self.log_tail:
            text += "\n  last lines of its log:\n" + "\n".join("    " + line for line in self.log_tail)
        super().__init__(text)


class RequestError(ContainersError, ValueError):
    """A request (REST body or query, command-line flag, magic option) is invalid.

    Kept apart from :class:`SpecError`: the spec file is fine, what was asked of it is not.
    """


class NotFoundError(ContainersError, LookupError):
    """An image, container, build or job does not exist (or is not visible to the caller)."""


class ConflictError(ContainersError):
    """The request conflicts with the current state (e.g. cancelling a job that already finished, removing
    an image a container still uses)."""


class BackendError(ContainersError):
    """The container engine failed a request for a reason that is not the caller's input."""


class EngineUnavailableError(BackendError):
    """No container engine answers at the configured address."""


class EngineRefusedError(BackendError):
    """The engine answered and refused the request (its message says why)."""


class GpuUnavailableError(BackendError):
    """GPUs were requested from an engine that cannot provide them."""


class SessionError(ContainersError):
    """A ``%%container`` session could not do what was asked (e.g. a variable that cannot travel)."""


class RunError(ContainersError):
    """A container run ended abnormally (not merely with a non-zero exit code)."""

    def __init__(self, message: str, *, exit_code: int | None = None):
        self.exit_code = exit_code
        super().__init__(message)


class OutOfMemoryError(RunError):
    """The container was killed for exceeding its memory limit."""


class RunTimeoutError(RunError):
    """The container exceeded its wall-clock timeout and was killed."""


class RegistryError(BackendError):
    """A container registry refused or could not be reached during a push or pull (the message names it)."""


class RegistryAuthError(RegistryError):
    """The registry wants credentials it did not get, or refused the ones Docker's config gave."""


class RegistryTlsError(RegistryError):
    """The registry's TLS certificate is not trusted by the engine (an unknown CA, a wrong host name)."""


class RegistryUnavailableError(RegistryError):
    """Nothing answers at the registry's address."""


class BundleError(RequestError):
    """An environment bundle is malformed, tampered with or unsafe (a path out of its folder, a size over the
    bounds, a hash that does not match its manifest)."""
