"""``jupyter-containers`` (also ``jupyter containers``): the command-line front end.

Kept thin: every command is a call on ContainersManager plus presentation. Imports are deferred to the
command that needs them, so an unchanged ``build`` answers in well under half a second.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .errors import ContainersError, OutOfMemoryError, RunError, RunTimeoutError
from .frontend import (
    BuildProgress,
    add_execute_arguments,
    add_resource_arguments,
    execute_from_args,
    resource_flags,
    resources_from_flags,
    table,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after "--" is the container's command, never our options (as in docker run).
    command: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, command = argv[:split], argv[split + 1 :]
    args = parser.parse_args(argv)
    args.cmd = command
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    previous = _stop_on_termination()
    try:
        _refuse_nul_bytes(args)
        return int(args.func(args) or 0)
    except Terminated as exc:
        # The container (of run, or execute's kernel) was removed on the way out, as on Ctrl-C.
        print(f"jupyter-containers: stopped by {exc.name}; its container was stopped and removed", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ContainersError as exc:
        if args.debug:
            raise
        from .redact import redact

        print(f"jupyter-containers: error: {redact(str(exc))}", file=sys.stderr)
        if isinstance(exc, RunTimeoutError):
            return 124
        if isinstance(exc, OutOfMemoryError):
            return exc.exit_code or 137
        if isinstance(exc, RunError) and exc.exit_code:
            return exc.exit_code
        return 1
    finally:
        _restore(previous)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (a job scheduler's timeout, a closed terminal), raised where the program waits.

    A KeyboardInterrupt, so that every path that cleans up after Ctrl-C (removing the container of ``run``,
    stopping the kernel of ``execute``) also runs for these; without it Python would exit at once and leave
    the container running until its command ends.
    """

    def __init__(self, signum: int):
        import signal

        super().__init__(signum)
        self.signum = signum
        self.name = signal.Signals(signum).name


def _stop_on_termination() -> dict[int, Any]:
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}  # called in-process from a thread (tests, %container execute): signals are not ours

    def stop(signum: int, frame: Any) -> None:
        raise Terminated(signum)

    previous: dict[int, Any] = {}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        previous[signum] = signal.signal(signum, stop)
    return previous


def _restore(previous: dict[int, Any]) -> None:
    import signal

    for signum, handler in previous.items():
        signal.signal(signum, handler)


def _refuse_nul_bytes(args: argparse.Namespace) -> None:
    """No argument may hold a NUL byte: no path, name or command can, and Python would raise ValueError."""
    from .errors import RequestError

    for name, value in vars(args).items():
        values = value if isinstance(value, list) else [value]
        for item in values:
            texts = item if isinstance(item, list | tuple) else [item]
            if any(isinstance(text, str) and "\0" in text for text in texts):
                positional = name in ("source", "notebook") or (name == "env" and args.command != "execute")
                shown = (
                    "the command" if name == "cmd" else name.upper() if positional else f"--{name.replace('_', '-')}"
                )
                raise RequestError(f"{shown}: an argument contains a NUL byte; remove it")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jupyter-containers",
        description="Build notebook environments into container images and run code in them with limits.",
    )
    parser.add_argument("--version", action="version", version=f"jupyter-containers {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-f", "--file", help="spec file (default: ./containers.toml or ./pyproject.toml)")
    common.add_argument(
        "--backend", metavar="NAME", help="container backend by name (default: c.ContainersManager.backend_name)"
    )
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.set_defaults(debug=False, file=None, backend=None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("build", parents=[common], help="build an environment's image (no-op when unchanged)")
    p.add_argument("env", metavar="ENV")
    p.add_argument("--locked", action="store_true", help="install exactly the versions in containers.lock")
    p.add_argument("--json", action="store_true", help='print {"image": ..., "built": ..., "seconds": ...}')
    p.add_argument("-q", "--quiet", action="store_true", help="no build log")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser(
        "run",
        parents=[common],
        help="run a command in an environment's container",
        usage="%(prog)s ENV [limits...] -- CMD [ARG...]",
    )
    p.add_argument("env", metavar="ENV")
    add_resource_arguments(p)
    p.add_argument(
        "-v",
        "--volume",
        action="append",
        default=[],
        metavar="HOST:CONTAINER[:ro]",
        help="extra bind mount (inside the workspace unless allowed by config)",
    )
    p.add_argument("-e", "--env", dest="environment", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--locked", action="store_true", help="build from containers.lock if a build is needed")
    p.add_argument("-q", "--quiet", action="store_true", help="no build log and no summary line")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "execute",
        parents=[common],
        help="run a whole notebook in an environment's container (papermill-style parameters)",
        description="Run every cell of NOTEBOOK with its kernel in ENV's container; the output notebook is "
        "rewritten after each cell and records the environment. The spec file is -f, else the one next to "
        "the notebook, else the one in the current folder. Exit status: 0 completed, 1 a cell error or a dead "
        "kernel, 124 timed out (--timeout or the spec's resources.timeout), 130 interrupted.",
        usage="%(prog)s NOTEBOOK --env ENV [-p NAME VALUE]... [-r NAME VALUE]... [-o OUTPUT] [limits...]",
    )
    add_execute_arguments(p)
    p.set_defaults(func=cmd_execute)

    p = sub.add_parser("spec", parents=[common], help="show an environment (or the spec JSON Schema)")
    spec_sub = p.add_subparsers(dest="spec_command", metavar="SUBCOMMAND", required=True)
    q = spec_sub.add_parser("show", parents=[common], help="the normalized environment")
    q.add_argument("env", metavar="ENV")
    q.add_argument("--json", action="store_true")
    q.add_argument("--dockerfile", action="store_true", help="print the Dockerfile it builds from")
    q.set_defaults(func=cmd_spec_show)
    q = spec_sub.add_parser("list", parents=[common], help="the environments of the spec file")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_spec_list)
    q = spec_sub.add_parser("schema", parents=[common], help="the JSON Schema of spec files")
    q.set_defaults(func=cmd_spec_schema)

    p = sub.add_parser("capture", parents=[common], help="write this interpreter's environment as a spec")
    p.add_argument(
        "--imported",
        nargs="*",
        metavar="FILE",
        help="only distributions imported by these .py/.ipynb files (and their dependencies)",
    )
    p.add_argument("--name", default="captured", help="environment name (default: captured)")
    p.add_argument("-o", "--output", required=True, help="spec file to write or add to")
    p.add_argument("--force", action="store_true", help="replace an environment of the same name")
    p.set_defaults(func=cmd_capture)

    p = sub.add_parser(
        "import", parents=[common], help="import requirements.txt, environment.yml, pyproject.toml or binder/"
    )
    p.add_argument("source", metavar="FILE_OR_DIR")
    p.add_argument("-o", "--output", default="containers.toml", help="spec file to write or add to")
    p.add_argument("--name", help="environment name (default: from the source)")
    p.add_argument("--force", action="store_true", help="replace an environment of the same name")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("lock", parents=[common], help="(re)write containers.lock from the environment's image")
    p.add_argument("env", metavar="ENV")
    p.set_defaults(func=cmd_lock)

    p = sub.add_parser("images", parents=[common], help="list the images jupyter-containers built")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_images)

    p = sub.add_parser("prune", parents=[common], help="remove our stopped containers and superseded images")
    p.add_argument("--all", action="store_true", help="remove every environment image too (not base images)")
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("engine", parents=[common], help="engine version, storage driver and GPU runtimes")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_engine)

    p = sub.add_parser("kernelspec", parents=[common], help="install Jupyter kernelspecs for container kernels")
    ks_sub = p.add_subparsers(dest="kernelspec_command", metavar="SUBCOMMAND", required=True)
    q = ks_sub.add_parser("install", parents=[common], help="a kernel for ENV in JupyterLab, console, nbclient")
    q.add_argument("env", metavar="ENV")
    add_resource_arguments(q)
    q.add_argument("--name", help="kernelspec name (default: containers-ENV[-limits])")
    q.add_argument("--display-name", help="name shown in the launcher (default: 'ENV (container, limits)')")
    where = q.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="install for the current user only")
    where.add_argument("--sys-prefix", action="store_true", help="install into this Python's prefix (venvs)")
    q.set_defaults(func=cmd_kernelspec_install)

    p = sub.add_parser(
        "setup",
        parents=[common],
        help="start (or install) a Docker engine and prepare a base image",
        description="Ensure the configured engine answers (start or install it if needed) and a base image exists "
        "on it (pull it, else bootstrap one from Debian packages). No spec file is needed.",
    )
    p.add_argument(
        "--base", help="base image to use when present or pullable (default: c.Builder.default_base, python:3.11-slim)"
    )
    p.add_argument(
        "--offline-tag",
        help="tag of the bootstrapped base (default: c.Builder.offline_base, jupyter-containers/base:bookworm)",
    )
    p.add_argument("--no-install", action="store_true", help="never apt-get install docker.io")
    p.add_argument("--no-pull", action="store_true", help="do not try to pull --base")
    p.add_argument(
        "--rebootstrap", action="store_true", help="bootstrap --offline-tag again even if it exists (e.g. for updates)"
    )
    p.add_argument("--suite", default="bookworm", help="Debian suite for --rebootstrap (bookworm)")
    p.add_argument("--mirror", default=None, help="Debian mirror for --rebootstrap (default: the host's)")
    p.set_defaults(func=cmd_setup)
    return parser


def _manager(args: argparse.Namespace, *, search_from: Sequence[Path] = ()) -> Any:
    """The manager for this command: the spec file of -f (or found), the configuration, --backend."""
    from .manager import ContainersManager

    overrides = {"backend_name": args.backend} if getattr(args, "backend", None) else {}
    return ContainersManager.discover(args.file, search_from=search_from, **overrides)


# ---------------------------------------------------------------------- build
def cmd_build(args: argparse.Namespace) -> int:
    manager = _manager(args)
    progress = BuildProgress(quiet=args.quiet or False)
    try:
        result = manager.build(args.env, locked=args.locked, on_event=progress)
    finally:
        progress.close()
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        state = "built" if result.built else "up to date"
        print(f"{result.image} ({state}, {result.seconds:.2f}s)")
    return 0


# ---------------------------------------------------------------------- run
def cmd_run(args: argparse.Namespace) -> int:
    import time

    from .errors import RequestError

    command = list(args.cmd)
    if not command:
        raise RequestError("no command given; use: jupyter-containers run ENV [limits...] -- CMD [ARG...]")
    overrides = resources_from_flags(args)
    mounts = [_parse_volume(v) for v in args.volume]
    environment = {}
    for item in args.environment:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise RequestError(f"-e {item!r}: use KEY=VALUE")
        environment[key] = value
    manager = _manager(args)
    progress = BuildProgress(quiet=args.quiet)
    out, err = sys.stdout.buffer, sys.stderr.buffer

    def write(stream: Any) -> Any:
        def _write(data: bytes) -> None:
            stream.write(data)
            stream.flush()

        return _write

    started = time.perf_counter()
    try:
        build, resources, result = manager.run(
            args.env,
            command,
            resources=overrides,
            mounts=mounts,
            environment=environment,
            locked=args.locked,
            on_event=progress,
            stdout=write(out),
            stderr=write(err),
        )
    finally:
        progress.close()
    if not args.quiet:
        print(
            f"jupyter-containers: ran {' '.join(command)!r} in {build.image} ({resources.describe()}) "
            f"in {time.perf_counter() - started:.1f}s: exit code {result.exit_code}",
            file=sys.stderr,
        )
    return result.exit_code


def cmd_execute(args: argparse.Namespace) -> int:
    return execute_from_args(args, _manager(args, search_from=[Path(args.notebook).resolve().parent]))


def _parse_volume(text: str) -> tuple[str, str, bool]:
    from .errors import RequestError

    parts = text.split(":")
    read_only = False
    if len(parts) >= 2 and parts[-1] in ("ro", "rw"):
        read_only = parts.pop() == "ro"
    if len(parts) == 1:
        host = parts[0]
        target = "/mnt/" + Path(host.rstrip("/")).name
    elif len(parts) == 2:
        host, target = parts
    else:
        raise RequestError(f"-v {text!r}: use HOST_PATH[:CONTAINER_PATH][:ro]")
    return host, target, read_only


# ---------------------------------------------------------------------- spec
def cmd_spec_show(args: argparse.Namespace) -> int:
    manager = _manager(args)
    env = manager.environment(args.env)
    if args.dockerfile:
        print(manager.builder.plan(env).dockerfile, end="")
        return 0
    from .redact import redact, redact_data

    data = redact_data(env.to_dict())
    if args.json:
        print(json.dumps({"name": env.name, "file": str(env.source), **data}, indent=2))
    else:
        from .spec.writer import render_environment_toml

        print(f"# {env.source}")
        print(redact(render_environment_toml(env)), end="")
    return 0


def cmd_spec_list(args: argparse.Namespace) -> int:
    spec = _manager(args).spec()
    if args.json:
        print(json.dumps({name: env.to_dict() for name, env in spec.environments.items()}, indent=2))
        return 0
    for name, env in spec.environments.items():
        print(f"{name}\t{env.description or ''}\t{env.resources.describe()}")
    return 0


def cmd_spec_schema(args: argparse.Namespace) -> int:
    from .spec.schema import SPEC_SCHEMA

    print(json.dumps(SPEC_SCHEMA, indent=2))
    return 0


# ---------------------------------------------------------------------- capture / import
def cmd_capture(args: argparse.Namespace) -> int:
    from .errors import RequestError
    from .spec.capture import capture_environment, modules_from_files
    from .spec.writer import add_environment_to_file

    if args.imported is None:
        result = capture_environment(args.name)
    else:
        if not args.imported:
            raise RequestError(
                "--imported needs the .py or .ipynb files whose imports to capture "
                "(in a notebook, '%container capture --imported' uses the kernel's imports)"
            )
        modules = modules_from_files(Path(p) for p in args.imported)
        result = capture_environment(args.name, imported=True, modules=modules)
    add_environment_to_file(Path(args.output), result.environment, result.notes, force=args.force)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote environment {result.environment.name!r} ({len(result.environment.pip)} packages) to {args.output}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from .spec.importers import import_source
    from .spec.writer import add_environment_to_file

    result = import_source(Path(args.source), name=args.name)
    add_environment_to_file(Path(args.output), result.environment, result.notes, force=args.force)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote environment {result.environment.name!r} to {args.output}")
    return 0


# ---------------------------------------------------------------------- lock / images / prune / engine
def cmd_lock(args: argparse.Namespace) -> int:
    manager = _manager(args)
    progress = BuildProgress()
    try:
        entry = manager.lock(args.env, on_event=progress)
    finally:
        progress.close()
    print(f"locked {args.env}: {len(entry.packages)} packages, python {entry.python} → {manager.spec().lock_path}")
    return 0


def cmd_images(args: argparse.Namespace) -> int:
    from .units import format_size

    images = _manager(args).images()
    if args.json:
        print(json.dumps([image.to_dict() for image in images], indent=2))
        return 0
    rows = [("IMAGE", "ENVIRONMENT", "SIZE", "ID")]
    for image in images:
        env = image.label("env") or image.label("kind") or ""
        for tag in image.tags or ("<untagged>",):
            rows.append((tag, env, format_size(image.size or 0), image.id.split(":")[-1][:12]))
    table(rows)
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    removed = _manager(args).prune(all=args.all, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    print(
        f"{verb} {len(removed['containers'])} containers, {len(removed['images'])} images, "
        f"{len(removed['folders'])} stale kernel socket folders"
    )
    for ref in removed["containers"] + removed["images"] + removed["folders"]:
        print(f"  {ref}")
    return 0


def cmd_engine(args: argparse.Namespace) -> int:
    info = _manager(args).engine()
    if args.json:
        print(json.dumps(info.to_dict(), indent=2))
        return 0
    gpus = ", ".join(info.gpu_runtimes) or "none (install the NVIDIA Container Toolkit for --gpus)"
    print(f"engine:          Docker {info.version} (API {info.api_version}) at {info.address}")
    print(f"os/arch:         {info.os} / {info.architecture}")
    print(f"storage driver:  {info.storage_driver}, cgroup v{info.cgroup_version}")
    print(f"cpus/memory:     {info.cpus} / {(info.memory or 0) / 2**30:.1f} GiB")
    print(f"runtimes:        {', '.join(info.runtimes)}")
    print(f"GPU runtimes:    {gpus}")
    return 0


def cmd_kernelspec_install(args: argparse.Namespace) -> int:
    resources_from_flags(args)  # validates the flags with their names before anything is written
    folder = _manager(args).install_kernel_spec(
        args.env,
        resource_flags(args),
        name=args.name,
        display_name=args.display_name,
        user=args.user,
        prefix=sys.prefix if args.sys_prefix else None,
    )
    print(f"installed kernelspec {Path(folder).name} in {folder}")
    return 0


def cmd_setup(args: argparse.Namespace) -> int:
    """Make this host ready to build: an engine that answers and a default base image on it.

    The engine is the manager's backend (c.ContainersManager.backend_name, c.DockerBackend.base_url), so setup
    prepares the engine that builds and kernels then use; the base defaults come from c.Builder.
    """
    from .config import load_config
    from .errors import SpecError
    from .manager import ContainersManager
    from .provision.base_image import bootstrap_base_image, ensure_base_image
    from .provision.engine import ensure_engine

    def say(text: str) -> None:
        print(text, flush=True)

    overrides = {"backend_name": args.backend} if getattr(args, "backend", None) else {}
    try:  # with a spec file, its project's config applies too; setup itself needs none
        manager = ContainersManager.discover(args.file, **overrides)
    except SpecError:
        if args.file:
            raise
        manager = ContainersManager(config=load_config(), **overrides)
    backend = manager.backend
    base = args.base or manager.builder.default_base
    offline_tag = args.offline_tag or manager.builder.offline_base
    info = ensure_engine(backend, install=not args.no_install, log=say)
    if args.rebootstrap:
        bootstrap_base_image(offline_tag, backend=backend, suite=args.suite, mirror=args.mirror, log=say)
        reference = offline_tag
    else:
        reference = ensure_base_image(
            base, backend=backend, offline_tag=offline_tag, allow_pull=not args.no_pull, log=say
        )
    image_id = backend.image_id(reference) or "?"
    say(f"ready: Docker {info.version} at {backend.address}; default base {reference} ({image_id[:19]})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
