"""Deterministic Dockerfile and build context for an environment.

Same inputs ⇒ byte-identical Dockerfile and context files, so the content hash that names the image is
stable. Layers run from least to most volatile (base → system packages → virtualenv → requirement files →
spec pip list → env → post-build), so editing the pip list never reinstalls apt packages or requirement
files.

Only the system layers (the user, apt) and ``post_build_root`` run as root. The virtualenv is created, filled
and owned by the environment's user (uid 1000, ``HOME=/home/jovyan``) and ``post_build`` runs as that user,
as repo2docker runs ``postBuild``: what a step writes under ``$HOME`` belongs to the user the containers run
as, and ``pip``/``%pip`` in a running container can install into the virtualenv. Every virtualenv has pip.

Everything the build needs only while building — the uv binary, the host CA bundle, index settings, the wheels
of ``find_links`` folders — enters through BuildKit bind mounts, never through COPY: it is not in any layer nor
in the history (the one COPY is the kernel startup file, which belongs to the image). uv and the wheels come
from images of their own on the engine (:mod:`.mounted`), not from the context: the context then carries only
the spec's small files, not 38 MB of uv and the size of the wheels with every build.

The spec's ``env`` values reach every process in the container byte for byte; see :func:`env_lines`.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ..spec.model import Environment
from . import mounted

VENV = "/opt/env"
WORKSPACE = "/workspace"
USER_UID = 1000
USER_NAME = "jovyan"
USER_HOME = f"/home/{USER_NAME}"
BUILD_DIR = "/tmp/jupyter-containers"
#: Cache mounts shared by every build on the engine: a warm uv cache makes "one package added" cheap.
#: Owned by the environment's user, who runs uv (a root-owned cache of older builds has another id).
UV_CACHE_ID = "jupyter-containers-uv-1000"
UV_CACHE_DIR = f"{BUILD_DIR}/uv-cache"
CA_TARGET = "/etc/ssl/certs/ca-certificates.crt"
KERNEL_REQUIREMENT = "ipykernel>=6.29"
#: Every environment has pip (``pip`` in post_build, ``%pip`` in a kernel); uv still does the installing.
SEED_REQUIREMENTS = ("pip",)
#: IPython runs the startup files of ``sys.prefix/etc/ipython/startup`` in every kernel of the virtualenv.
KERNEL_STARTUP = f"{VENV}/etc/ipython/startup/00-jupyter-containers.py"
#: What that startup file holds (``%pip`` that fails the cell on failure and notes the drift from the spec).
KERNEL_STARTUP_CODE = (Path(__file__).parent / "kernel_startup.py").read_text(encoding="utf-8")
#: Where the env values that a Dockerfile ENV cannot hold live in the image (see env_lines).
ENV_FILE = "/etc/jupyter-containers/env.sh"
#: Where uv installs a Python the base image lacks (a download: needs the internet, see docs/air-gapped.md).
PYTHON_DIR = "/opt/python"
#: Where the wheels of an environment's ``find_links`` folders are mounted for its install layers (build only).
FIND_LINKS_DIR = f"{BUILD_DIR}/find-links"
_CA_ENV = f"SSL_CERT_FILE={CA_TARGET} PIP_CERT={CA_TARGET} REQUESTS_CA_BUNDLE={CA_TARGET} CURL_CA_BUNDLE={CA_TARGET}"


@dataclass(frozen=True)
class BuildInputs:
    """Everything besides the spec that shapes the Dockerfile.

    ``requirements``/``pip``/``locked`` are already-flattened requirement lines; ``apt`` may carry
    ``=version`` pins (from a lock). ``has_ca``/``has_index_config`` say whether the host provides a CA
    bundle or pip index settings to inject. ``find_links`` names the environment's wheel folders: each by a
    digest of its wheels' names and bytes, so that the folder uv reads (and caches by), and its image
    (:mod:`.mounted`), change whenever a wheel does; ``wheels`` lists their files (``(.jc/find-links/DIGEST/NAME,
    sha256, host path)``), which the builder puts in the folders' images.
    """

    base: str
    requirements: Sequence[str] = ()
    constraints: Sequence[str] = ()
    pip: Sequence[str] = ()
    locked: Sequence[str] | None = None
    apt: Sequence[str] = ()
    has_ca: bool = False
    has_index_config: bool = False
    uv_cache_id: str = UV_CACHE_ID
    kernel: bool = True
    compile_bytecode: bool = True
    keep_uv: bool = False
    #: The engine's image holding uv (:mod:`.mounted`), which the steps that run uv mount.
    uv_image: str = mounted.UV_REPOSITORY

    def folder_wheels(self, folder: str) -> list[tuple[str, str, Path]]:
        """The wheels of the find_links folder named ``folder``, as ``(file name, sha256, host path)``."""
        prefix = f".jc/find-links/{folder}/"
        return [(name[len(prefix) :], sha, path) for name, sha, path in self.wheels if name.startswith(prefix)]

    find_links: Sequence[str] = ()
    wheels: Sequence[tuple[str, str, Path]] = ()


def render(env: Environment, inputs: BuildInputs) -> tuple[str, dict[str, bytes]]:
    """The Dockerfile text and the small context files it refers to (name → bytes).

    The uv binary and the CA bundle are not returned: they are added to the tar by the builder, and
    the Dockerfile refers to them by fixed names under ``.jc/``.
    """
    files: dict[str, bytes] = {}
    owned = f"{WORKSPACE} {USER_HOME} {VENV} {PYTHON_DIR}"
    lines = [
        "# Generated by jupyter-containers: do not edit; change the spec and rebuild.",
        f"# Environment: {env.name}",
        f"FROM {inputs.base}",
        "USER root",
        # Nothing before the install layers names the environment: the user, virtualenv and kernel layers are
        # then the same for every environment of one base and Python, and BuildKit builds them once per engine.
        f"ENV VIRTUAL_ENV={VENV} PATH={VENV}/bin:$PATH PYTHONUNBUFFERED=1 LANG=C.UTF-8",
        # The non-root user every container runs as; kept when the base already has uid 1000. It owns the
        # virtualenv (and the folder uv would install a Python into) so that it can build and extend it.
        f"RUN (getent passwd {USER_UID} >/dev/null || useradd --uid {USER_UID} --user-group --create-home"
        f" --shell /bin/sh {USER_NAME}) && mkdir -p {owned} && chown {USER_UID}:{USER_UID} {owned}",
    ]
    ca = f" --mount=type=bind,source=.jc/ca-certificates.crt,target={CA_TARGET},rw" if inputs.has_ca else ""
    if inputs.apt:
        packages = " ".join(shlex.quote(p) for p in sorted(inputs.apt))
        lines.append(
            "RUN"
            + ca
            + " --mount=type=cache,id=jupyter-containers-apt-lists,target=/var/lib/apt/lists,sharing=locked"
            + " --mount=type=cache,id=jupyter-containers-apt-archives,target=/var/cache/apt/archives,sharing=locked"
            + " rm -f /etc/apt/apt.conf.d/docker-clean"
            + " && apt-get update -q"
            + f" && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends {packages}"
        )
    lines.append(f"USER {USER_UID}:{USER_UID}")
    uv_env, uv_mounts = _uv_parts(inputs)
    uv = f"env {uv_env} {BUILD_DIR}/bin/uv"
    python = shlex.quote(env.python) if env.python else "python3"
    # The spec's packages are installed without uv's compilation and compiled by _compile (their test suites
    # left out); the kernel (the seed below) keeps uv's, which compiles everything it installs.
    no_compile = f"env {_uv_parts(inputs, compile_bytecode=False)[0]} {BUILD_DIR}/bin/uv"
    install = f"{no_compile} pip install --python {VENV}/bin/python"
    # The seed (pip, and the kernel unless the spec brings its own) comes with the virtualenv, before the
    # spec's packages: it changes least, so editing the pip list never reinstalls (and recompiles) it. Later
    # installs name it again (-r seed.txt) so that one resolution keeps it consistent with the spec's packages.
    files[".jc/seed.txt"] = _lines([*SEED_REQUIREMENTS, *([KERNEL_REQUIREMENT] if inputs.kernel else [])])
    seed_mount = f" --mount=type=bind,source=.jc/seed.txt,target={BUILD_DIR}/seed.txt"
    # pip is installed without compiling its ~1000 modules to bytecode (that doubled its cost; pip runs rarely,
    # and the user owning the virtualenv lets Python cache them on first use); the kernel is compiled.
    seed_first = f" && {install} {' '.join(SEED_REQUIREMENTS)}"
    lines.append(
        f"RUN{uv_mounts}{seed_mount} {uv} venv --python {python} {VENV}{seed_first if SEED_REQUIREMENTS else ''}"
        f" && {uv} pip install --python {VENV}/bin/python -r {BUILD_DIR}/seed.txt"
    )
    # %pip in a kernel: fails the cell when pip fails, and says that the session drifted from the spec.
    files[".jc/kernel_startup.py"] = KERNEL_STARTUP_CODE.encode()
    lines.append(f"COPY .jc/kernel_startup.py {KERNEL_STARTUP}")
    keep_seed = f" -r {BUILD_DIR}/seed.txt"

    def install_layer(name: str, content: Sequence[str], flags: str = "", extra: Sequence[str] = ()) -> None:
        files[f".jc/{name}"] = _lines(content)
        _add_compile_script(inputs, files)
        extra = (*extra, *_compile_mount(inputs))
        mounts = _install_mounts(inputs, (*extra, name))
        lines.append(
            f"RUN{uv_mounts}{mounts}{seed_mount} {install}{flags} -r {BUILD_DIR}/{name}{keep_seed}{_compile(inputs)}"
        )

    if inputs.locked is not None:
        install_layer("locked.txt", inputs.locked, " --no-deps" + _find_links_flags(inputs))
    else:
        sources = _source_files(inputs, files)
        if sources:
            _add_compile_script(inputs, files)
        # One layer per source (requirement files, then the spec's pip list, the most often edited): each
        # resolves every source up to it together and syncs the virtualenv to exactly that resolution.
        for i in range(len(sources)):
            lines.append(
                f"RUN{uv_mounts}{_sync_mounts(inputs, sources[: i + 1])} {_sync(no_compile, inputs, sources[: i + 1])}"
            )
    lines.append(f"ENV JUPYTER_CONTAINERS_ENV={env.name}")
    env_file: bytes = b""
    entry: list[str] = []
    if env.env:
        env_layer, env_file, entry = env_lines(env.env)
        lines.extend(env_layer)
        if env_file:
            files[".jc/env.sh"] = env_file
    load_env = f". {ENV_FILE} && " if env_file else ""
    # Root steps first (system-wide changes), then the user's steps, which may build on them.
    steps = [("post_build_root", i, command, True) for i, command in enumerate(env.post_build_root)]
    steps += [("post_build", i, command, False) for i, command in enumerate(env.post_build)]
    user = f"{USER_UID}:{USER_UID}"
    for field, i, command, as_root in steps:
        name = f"{field}_{i}"
        wanted = "root" if as_root else f"{USER_UID}:{USER_UID}"
        if wanted != user:
            lines.append(f"USER {wanted}")
            user = wanted
        script = command if command.startswith("#!") else "#!/bin/sh\nset -e\n" + command
        files[f".jc/{name}"] = (script.rstrip("\n") + "\n").encode()
        first = command.strip().splitlines()[0] if command.strip() else ""
        if first.startswith("#!"):
            first = next((ln for ln in command.splitlines()[1:] if ln.strip() and not ln.startswith("#")), first)
        lines.append(f"# {field}[{i}]: {first[:100]}" + (" ..." if len(command.strip().splitlines()) > 1 else ""))
        home = "/root" if as_root else USER_HOME
        lines.append(
            f"RUN{ca} --mount=type=bind,source=.jc/{name},target={BUILD_DIR}/{name} "
            f"{load_env}env HOME={home} {_CA_ENV} {BUILD_DIR}/{name}"
        )
    if inputs.keep_uv:
        # uv in the image (c.Builder.keep_uv): %uv pip install in a kernel. Last, so that it costs no layer reuse.
        owner = f"{USER_UID}:{USER_UID}"
        lines.append(f"COPY --from={inputs.uv_image} --chown={owner} {mounted.UV_PATH} {VENV}/bin/uv")
    lines.extend(entry)
    lines.append(f"USER {USER_UID}")
    lines.append(f"WORKDIR {WORKSPACE}")
    return "\n".join(lines) + "\n", files


def resolves(inputs: BuildInputs) -> bool:
    """Whether the install layers resolve afresh and sync (every build but a locked one).

    Resolving every source together, as if nothing were installed, and then making the virtualenv exactly
    that resolution (missing packages installed, other versions replaced, extraneous ones removed) means the
    result depends only on the sources, not on what the layers below happened to install. That is what lets
    an edited spec be built on top of its previous image (:func:`render_delta`) and still install exactly
    what a cold build of the edited spec installs. Hash-checking lines (``--hash``) are checked as before.
    """
    return inputs.locked is None


def render_delta(env: Environment, inputs: BuildInputs, previous: str) -> tuple[str, dict[str, bytes]]:
    """An incremental Dockerfile: ``FROM`` the environment's previous image, one layer syncing it to the spec.

    Only valid when the previous image was rendered from the same frame (:func:`frame_inputs`: everything
    but the requirement files and the pip list) and nothing after the install layers depends on the
    packages (no post-build steps): then the previous image is that frame plus some installed set, and the
    one sync layer replaces that set by exactly the resolution of the edited sources, which is what the
    last install layer of a cold build syncs to. Only the changed packages are downloaded, installed,
    compiled and exported (unchanged files keep their bytecode), so adding one package takes about a second.

    The spec's ``env`` values are unset for the sync, as a cold build's install layers run before them.
    """
    files: dict[str, bytes] = {}
    uv_env, uv_mounts = _uv_parts(inputs, compile_bytecode=False)
    unset = "".join(f" -u {shlex.quote(key)}" for key in sorted(env.env))
    uv = f"env{unset} {uv_env} {BUILD_DIR}/bin/uv"
    files[".jc/seed.txt"] = _lines([*SEED_REQUIREMENTS, *([KERNEL_REQUIREMENT] if inputs.kernel else [])])
    _add_compile_script(inputs, files)
    sources = _source_files(inputs, files)
    lines = [
        "# Generated by jupyter-containers: do not edit; change the spec and rebuild.",
        f"# Environment: {env.name}, incremental: the previous image synced to the edited spec",
        f"FROM {previous}",
        f"USER {USER_UID}:{USER_UID}",
        f"RUN{uv_mounts}{_sync_mounts(inputs, sources)} {_sync(uv, inputs, sources)}",
        f"USER {USER_UID}",
    ]
    return "\n".join(lines) + "\n", files


def frame_inputs(inputs: BuildInputs) -> BuildInputs:
    """The inputs without the requirement files and the pip list: what an incremental build keeps."""
    return replace(inputs, requirements=(), constraints=(), pip=())


#: ENV names of the image's own ENV line: a spec's env cannot be unset for a sync when it overrides them.
IMAGE_ENV = ("VIRTUAL_ENV", "PATH", "PYTHONUNBUFFERED", "LANG", "JUPYTER_CONTAINERS_ENV")


def _source_files(inputs: BuildInputs, files: dict[str, bytes]) -> list[str]:
    """The context files of the sources (requirement files first, the pip list last), added to ``files``."""
    sources = []
    if inputs.constraints:
        files[".jc/constraints.txt"] = _lines(inputs.constraints)
    if inputs.requirements:
        files[".jc/requirements.txt"] = _lines(inputs.requirements)
        sources.append("requirements.txt")
    if inputs.pip:
        files[".jc/pip.txt"] = _lines(inputs.pip)
        sources.append("pip.txt")
    return sources


def _sync_mounts(inputs: BuildInputs, sources: Sequence[str]) -> str:
    names = [*_compile_mount(inputs), *(["constraints.txt"] if inputs.constraints else [])]
    names += [*sources, "seed.txt"]
    return _install_mounts(inputs, names)


def _install_mounts(inputs: BuildInputs, names: Sequence[str]) -> str:
    """An install layer's mounts: each find_links folder's image, then the context files ``.jc/NAME``."""
    return _wheel_mounts(inputs) + "".join(f" --mount=type=bind,source=.jc/{n},target={BUILD_DIR}/{n}" for n in names)


def _sync(uv: str, inputs: BuildInputs, sources: Sequence[str]) -> str:
    """Resolve the sources (and the seed) together afresh and make the virtualenv exactly that resolution.

    ``--upgrade`` resolves as if nothing were installed (installed versions are not preferred), ``--exact``
    removes what the resolution no longer holds; only what changed is downloaded, installed and compiled.
    """
    constraints = f" -c {BUILD_DIR}/constraints.txt" if inputs.constraints else ""
    requirements = "".join(f" -r {BUILD_DIR}/{name}" for name in (*sources, "seed.txt"))
    return (
        f"{uv} pip install --python {VENV}/bin/python --exact --upgrade{_find_links_flags(inputs)}"
        f"{constraints}{requirements}{_compile(inputs)}"
    )


#: What the bytecode compilation of the spec's packages leaves out: their own test suites (``tests/``,
#: ``test/`` folders), which no kernel start and hardly any notebook imports, and which are most of what a
#: data-science stack would compile (pandas: 1,143 of its 1,440 modules; numpy: 250 of 487), and pip, which
#: the seed installs without bytecode (see render). The virtualenv is the container user's, so a module left
#: out is compiled and cached on its first import in a container.
COMPILE_EXCLUDE = r"/(tests?|site-packages/pip)/"

#: Compiles the virtualenv's modules that have no current bytecode, but :data:`COMPILE_EXCLUDE` (argv: the
#: folder, the pattern). Not ``compileall -j``: that checks every file's bytecode in its worker processes, four
#: files per message, which took 2.7 s on an incremental layer that had one new module (8,000 files checked).
#: Here the check (a stat and the 16-byte header, as importlib validates a timestamp pyc) is done in this
#: process and only what needs it is compiled, in parallel. A module that does not compile (Python 2
#: leftovers, templates) fails no build, as with pip. It says how many files it compiled and how long that took,
#: as uv does (the build log, benchmarks/build.py). The image's Python runs it: Python 3.8's language.
COMPILE_SCRIPT = """\
import importlib.util, os, py_compile, re, sys, time

def stale(path):
    try:
        st = os.stat(path)
        with open(importlib.util.cache_from_source(path), "rb") as fh:
            head = fh.read(16)
    except (OSError, ValueError):
        return True
    want = importlib.util.MAGIC_NUMBER + bytes(4)
    want += (int(st.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little") + (st.st_size & 0xFFFFFFFF).to_bytes(4, "little")
    return head != want

def compile_one(path):
    py_compile.compile(path, doraise=False, quiet=2, invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)

def main(root, exclude):
    started = time.perf_counter()
    skip = re.compile(exclude)
    todo = []
    for folder, folders, names in os.walk(root):
        folders[:] = [f for f in folders if f != "__pycache__" and not skip.search(os.path.join(folder, f) + "/")]
        todo.extend(p for p in (os.path.join(folder, n) for n in names if n.endswith(".py")) if stale(p))
    workers = os.cpu_count() or 1
    if len(todo) < 64 or workers == 1:
        for path in todo:
            compile_one(path)
    else:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(compile_one, todo, chunksize=max(1, len(todo) // (workers * 8))))
    print("Bytecode compiled %d files in %.2fs" % (len(todo), time.perf_counter() - started))

if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
"""


def _add_compile_script(inputs: BuildInputs, files: dict[str, bytes]) -> None:
    """The context file of :data:`COMPILE_SCRIPT`, for a Dockerfile with an install layer of the spec's packages
    (one without any, e.g. an environment of post_build steps only, keeps its files and tag)."""
    if inputs.compile_bytecode:
        files[".jc/compile.py"] = COMPILE_SCRIPT.encode()


def _compile_mount(inputs: BuildInputs) -> tuple[str, ...]:
    """The ``.jc/compile.py`` of :data:`COMPILE_SCRIPT`, mounted by the spec's install layers that compile."""
    return ("compile.py",) if inputs.compile_bytecode else ()


def _compile(inputs: BuildInputs) -> str:
    """Compile what the install left without bytecode (``c.Builder.compile_bytecode``), in parallel.

    uv compiles every file it installs and cannot leave any out, so the spec's layers install with
    ``UV_COMPILE_BYTECODE=0`` and :data:`COMPILE_SCRIPT` compiles them but :data:`COMPILE_EXCLUDE`; files whose
    bytecode is current (every unchanged one of an incremental layer) are only checked, not rewritten.
    """
    if not inputs.compile_bytecode:
        return ""
    return f" && {VENV}/bin/python {BUILD_DIR}/compile.py {VENV}/lib {shlex.quote(COMPILE_EXCLUDE)}"


def _wheel_mounts(inputs: BuildInputs) -> str:
    """Each ``find_links`` folder, mounted by every install layer from its image (:mod:`.mounted`) at
    :data:`FIND_LINKS_DIR`/DIGEST."""
    return "".join(
        f" --mount=type=bind,from={mounted.wheels_tag(name)},source={mounted.WHEELS_PATH}"
        f",target={FIND_LINKS_DIR}/{name}"
        for name in inputs.find_links
    )


def _find_links_flags(inputs: BuildInputs) -> str:
    """uv's ``--find-links`` for each wheel folder (mounted at :data:`FIND_LINKS_DIR`), in the spec's order."""
    return "".join(f" --find-links {FIND_LINKS_DIR}/{name}" for name in inputs.find_links)


def _uv_parts(inputs: BuildInputs, *, compile_bytecode: bool | None = None) -> tuple[str, str]:
    """uv's environment (cache, CA, index settings: build-only) and the mounts that bring them; uv compiles
    what it installs when ``compile_bytecode`` (default: the inputs')."""
    ca = f" --mount=type=bind,source=.jc/ca-certificates.crt,target={CA_TARGET},rw" if inputs.has_ca else ""
    wanted = inputs.compile_bytecode if compile_bytecode is None else compile_bytecode
    compile_flag = "1" if wanted else "0"
    uv_env = (
        f"HOME={USER_HOME} UV_CACHE_DIR={UV_CACHE_DIR} UV_LINK_MODE=copy UV_COMPILE_BYTECODE={compile_flag}"
        f" UV_PYTHON_INSTALL_DIR={PYTHON_DIR} {_CA_ENV}"
    )
    uv_mounts = (
        f" --mount=type=bind,from={inputs.uv_image},source={mounted.UV_PATH},target={BUILD_DIR}/bin/uv"
        + ca
        + f" --mount=type=cache,id={inputs.uv_cache_id},target={UV_CACHE_DIR},uid={USER_UID},gid={USER_UID}"
    )
    if inputs.has_index_config:
        uv_mounts += f" --mount=type=bind,source=.jc/uv.toml,target={BUILD_DIR}/uv.toml"
        uv_env += f" UV_CONFIG_FILE={BUILD_DIR}/uv.toml"
    return uv_env, uv_mounts


def env_lines(env: Mapping[str, str]) -> tuple[list[str], bytes, list[str]]:
    """The Dockerfile lines, env file and entry lines that give every process the spec's ``env``, exactly.

    Why two mechanisms: a Dockerfile ``ENV`` holds any printable text when it is double-quoted with
    ``\\``, ``"`` and ``$`` escaped (BuildKit's lexer un-escapes exactly those three inside double quotes,
    and expands no escaped ``$``), so ``café``, ``$HOME-x`` and quotes go there, unchanged, and show in
    ``docker inspect``. But it cannot hold a line break at all, nor reliably other control or invisible
    characters, nor a value longer than a Dockerfile line may be (BuildKit reads lines into a 64 KiB
    buffer). Such a value goes in ``ENV`` as a visible stand-in (``line1\\nline2``, or a short note for a
    long value) and, exactly, in :data:`ENV_FILE`: POSIX-shell assignments in single quotes, which keep
    every byte, newlines included. The image's ``ENTRYPOINT`` sources that file and then ``exec``s the
    command, so every process of every container (kernels, runs, jobs, a plain ``docker run``) sees the
    exact value; post-build steps source it too. The file replaces a value only while it still holds the
    stand-in, so a value set when the container is created (``docker run -e``, a run request's
    environment) wins, as it does over ``ENV``.

    Only images with such a value get the entry wrapper (it replaces a base image's own ``ENTRYPOINT``
    and resets its ``CMD`` to ``python``); the others are plain ``ENV``, as before.

    Returns:
        ``(dockerfile lines, env file bytes or b"", entry lines)``.
    """
    pairs = []
    assignments = []
    for key, value in env.items():
        exact = value.isprintable() and len(value) <= _MAX_ENV_LINE
        shown = value if exact else _visible(value)
        if len(shown) > _MAX_ENV_LINE:
            shown = f"({len(value)} characters, set from {ENV_FILE})"
        pairs.append(f"{key}={_env_quote(shown)}")
        if not exact:
            assignments.append(
                f'case "${{{key}-}}" in {_sh_quote(shown)}) {key}={_sh_quote(value)}; export {key} ;; esac\n'
            )
    # One pair per physical line: each stays short whatever the number of variables.
    lines = ["ENV " + " \\\n    ".join(pairs)]
    if not assignments:
        return lines, b"", []
    text = (
        "# Generated by jupyter-containers: the spec's env values that a Dockerfile ENV cannot hold.\n"
        "# Sourced by the entrypoint; a value set when the container was created is kept.\n" + "".join(assignments)
    )
    lines.append(f"COPY .jc/env.sh {ENV_FILE}")
    entry = [
        f'ENTRYPOINT ["/bin/sh", "-c", ". {ENV_FILE} && exec \\"$@\\"", "jupyter-containers-env"]',
        'CMD ["python"]',
    ]
    return lines, text.encode("utf-8"), entry


_MAX_ENV_LINE = 8192


def _env_quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def _sh_quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def _visible(value: str) -> str:
    """``value`` with each non-printable character written as a Python escape (``\\n``, ``\\x1b``, ``\\u200b``)."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in value)


def uv_index_config(settings: Mapping[str, object]) -> bytes | None:
    """``uv.toml`` mirroring the host's index settings (``index-url`` etc.), or None when there are none."""
    if not settings:
        return None
    import tomli_w

    return tomli_w.dumps({"pip": dict(settings)}).encode()


def _lines(items: Sequence[str]) -> bytes:
    return ("\n".join(items) + "\n").encode()
