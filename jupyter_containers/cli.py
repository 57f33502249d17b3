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
from typing import Any, cast

from . import __version__
from .errors import ContainersError, OutOfMemoryError, RunError, RunTimeoutError
from .frontend import (
    BuildProgress,
    add_execute_arguments,
    add_resource_arguments,
    check_execute_spec_file,
    describe_run,
    execute_from_args,
    rescheduling_backend,
    resource_flags,
    resources_from_flags,
    table,
)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Only the command being run gets its full parser (the others are listed by name and help): building every
    # command's arguments took 12 ms of a 0.24 s unchanged build. Options (-h, --version) first: all of them.
    parser = _parser(argv[0] if argv and not argv[0].startswith("-") else None)
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


#: --registry of run and execute (build, push and pull have their own wording).
REGISTRY_HELP = "pull the image from this registry instead of building when it is there (default: registry = of "
REGISTRY_HELP += "the target, else of containers.toml)"
#: --reschedule of run and execute.
RESCHEDULE_HELP = "on a swarm target: if the node running it goes down, run it once more from the start on "
RESCHEDULE_HELP += "another node (the target's reschedule_on_node_failure, for this run)"


class _Unparsed:
    """Stands in for the parser of a command this run does not parse: every argparse call on it (add_argument,
    add_argument_group, add_subparsers, set_defaults, ...) is accepted and does nothing."""

    def __getattr__(self, name: str) -> Any:
        return self._ignore

    def _ignore(self, *args: Any, **kwargs: Any) -> _Unparsed:
        return self


def _command_parser(*, unparsed: bool = False, **kwargs: Any) -> Any:
    """The subparsers' ``parser_class``: an ArgumentParser, or for a command this run does not parse none at
    all (an ArgumentParser costs 0.1-0.2 ms to make, most of the one-command parser when there are 19 others)."""
    return _Unparsed() if unparsed else argparse.ArgumentParser(**kwargs)


class _OnlyCommand:
    """The subparsers action of the top-level parser, building only ``command``'s parser in full (all of them
    when ``command`` is None). Every other command is still listed with its name and help, so the top-level
    ``--help``, the choices of an unknown command's error and the parsing of ``command`` are those of the full
    parser; no argument list ever reaches the others (they are not its first word)."""

    def __init__(self, sub: Any, command: str | None):
        self.sub, self.command = sub, command

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        if self.command is None or name == self.command:
            return self.sub.add_parser(name, **kwargs)
        return self.sub.add_parser(name, help=kwargs.get("help"), unparsed=True)


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; with ``command``, the other commands' arguments are left out (see main)."""
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
    common.add_argument(
        "--target", metavar="NAME", help="the spec file's [targets.NAME] to run on (default: the environment's own)"
    )
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.set_defaults(debug=False, file=None, backend=None, target=None)
    sub: Any = _OnlyCommand(
        # (a factory where argparse documents a class: it only ever calls it)
        parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=cast(Any, _command_parser)),
        command,
    )

    p = sub.add_parser("build", parents=[common], help="build an environment's image (no-op when unchanged)")
    p.add_argument("env", metavar="ENV")
    p.add_argument("--locked", action="store_true", help="install exactly the versions in containers.lock")
    p.add_argument("--json", action="store_true", help='print {"image": ..., "built": ..., "seconds": ...}')
    p.add_argument("-q", "--quiet", action="store_true", help="no build log")
    p.add_argument(
        "--registry", metavar="HOST/REPO", help="pull the image from here instead of building when it is there"
    )
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
    p.add_argument("--registry", metavar="HOST/REPO", help=REGISTRY_HELP)
    p.add_argument("--reschedule", action="store_true", help=RESCHEDULE_HELP)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "execute",
        parents=[common],
        help="run a whole notebook in an environment's container (papermill-style parameters)",
        description="Run every cell of NOTEBOOK with its kernel in ENV's container; the output notebook is "
        "rewritten after each cell and records the environment. The spec file is -f, else the one next to "
        "the notebook, else the one in the current folder (papermill's -f, a YAML file of parameters, is "
        "--parameters-file here). A cell calling sys.exit() or sys.exit(0) ends the run, completed, as in "
        "papermill. Exit status: 0 completed, 1 a cell error or a dead kernel, 124 timed out (--timeout or the "
        "spec's resources.timeout), 130 interrupted.",
        usage="%(prog)s NOTEBOOK --env ENV [-p NAME VALUE]... [-r NAME VALUE]... [-y YAML]... [-b BASE64]... "
        "[--parameters-file FILE]... [-o OUTPUT] [--cwd DIR] [--report-mode] "
        "[--sweep NAME=VALUES]... [--max-parallel N] [--min-parallel N] [--target-utilization U] [limits...]",
    )
    add_execute_arguments(p)
    p.add_argument("--registry", metavar="HOST/REPO", help=REGISTRY_HELP)
    p.add_argument("--reschedule", action="store_true", help=RESCHEDULE_HELP)
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
    q = spec_sub.add_parser(
        "from-notebook", parents=[common], help="recreate the spec and lock of the environment a notebook ran in"
    )
    q.add_argument("notebook", metavar="NOTEBOOK")
    q.add_argument("-o", "--output", default="containers.toml", help="spec file to write or add to")
    q.add_argument("--name", help="environment name (default: the recorded one)")
    q.add_argument(
        "--environment",
        metavar="ENV",
        help="which recorded environment, when the notebook used several (%%container cells, container kernels)",
    )
    q.add_argument("--force", action="store_true", help="replace an environment of the same name (and its lock)")
    q.set_defaults(func=cmd_spec_from_notebook)

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
        "import",
        parents=[common],
        help="import requirements.txt, environment.yml, pyproject.toml, Pipfile(.lock), setup.py or a repository",
    )
    p.add_argument("source", metavar="FILE_OR_DIR")
    p.add_argument("-o", "--output", default="containers.toml", help="spec file to write or add to")
    p.add_argument("--name", help="environment name (default: from the source)")
    p.add_argument("--force", action="store_true", help="replace an environment of the same name")
    p.set_defaults(func=cmd_import)

    _add_share_commands(sub, common)

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

    p = sub.add_parser(
        "targets", parents=[common], help="the spec file's targets: reachability, engine version, CPUs, memory, GPUs"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_targets)

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
        "on it (pull it; with --target, else send this machine's engine's copy there; else bootstrap one from "
        "Debian packages). No spec file is needed (except for --target).",
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

    overrides: dict[str, Any] = {"backend_name": args.backend} if getattr(args, "backend", None) else {}
    if getattr(args, "target", None):
        overrides["target"] = args.target
    if getattr(args, "registry", None):
        from .share.registry import check_registry

        overrides["registry"] = check_registry(args.registry)
    return ContainersManager.discover(args.file, search_from=search_from, **overrides)


# ---------------------------------------------------------------------- build
def cmd_build(args: argparse.Namespace) -> int:
    manager = _manager(args)
    progress = BuildProgress(quiet=args.quiet or False)
    try:
        result = manager.build(args.env, locked=args.locked, on_event=progress, registry=args.registry)
    finally:
        progress.close()
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        state = "built" if result.built else f"pulled from {result.pulled}" if result.pulled else "up to date"
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
    _apply_reschedule(args, manager)
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
            f"jupyter-containers: ran {' '.join(command)!r} in {build.image} "
            f"({describe_run(manager.environment(args.env).resources.merged(overrides), resources)}) "
            f"in {time.perf_counter() - started:.1f}s: exit code {result.exit_code}",
            file=sys.stderr,
        )
    return result.exit_code


def cmd_execute(args: argparse.Namespace) -> int:
    check_execute_spec_file(args.file)
    manager = _manager(args, search_from=[Path(args.notebook).resolve().parent])
    _apply_reschedule(args, manager)
    return execute_from_args(args, manager)


def _apply_reschedule(args: argparse.Namespace, manager: Any) -> None:
    """``--reschedule``: the swarm backend that runs ``args.env`` (--target, else the environment's own target)
    reschedules a run whose node went down, for this command only.

    Raises:
        RequestError: the environment does not run on a swarm target (no node can go down under it there).
    """
    if getattr(args, "reschedule", False):
        rescheduling_backend(manager, args.env).reschedule_on_node_failure = True


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
        f"{len(removed['folders'])} stale kernel socket folders, {len(removed['volumes'])} unused workspace volumes"
        + (f", {len(removed['secrets'])} leftover swarm secrets" if removed["secrets"] else "")
    )
    for ref in removed["containers"] + removed["images"] + removed["folders"] + removed["volumes"] + removed["secrets"]:
        print(f"  {ref}")
    return 0


def cmd_targets(args: argparse.Namespace) -> int:
    from .targets import describe

    manager = _manager(args)
    names = [None, *sorted(manager.spec().targets)] if not args.target else [args.target]
    rows = [describe(manager, name) for name in names]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    lines = [["TARGET", "ADDRESS", "STATE", "DOCKER", "CPUS", "MEMORY", "GPUS"]]
    for row in rows:
        if row["reachable"]:
            memory = f"{(row['memory'] or 0) / 2**30:.1f} GiB"
            lines.append(
                [row["name"], row["address"], "reachable", row["version"], str(row["cpus"]), memory, row["gpus"]]
            )
        else:
            lines.append([row["name"], row["address"] or "?", "unreachable", "", "", "", ""])
    table(lines)
    for row in rows:
        if not row["reachable"]:
            print(f"{row['name']}: {row['error']}", file=sys.stderr)
    return 0 if all(row["reachable"] for row in rows) else 1


def cmd_engine(args: argparse.Namespace) -> int:
    info = _manager(args).engine()
    if args.json:
        print(json.dumps(info.to_dict(), indent=2))
        return 0
    print(f"engine:          Docker {info.version} (API {info.api_version}) at {info.address}")
    print(f"os/arch:         {info.os} / {info.architecture}")
    print(f"storage driver:  {info.storage_driver}, cgroup v{info.cgroup_version}")
    print(f"cpus/memory:     {info.cpus} / {(info.memory or 0) / 2**30:.1f} GiB")
    print(f"runtimes:        {', '.join(info.runtimes)}")
    print(f"GPUs (--gpus):   {info.gpu_summary}")
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

    overrides: dict[str, Any] = {"backend_name": args.backend} if getattr(args, "backend", None) else {}
    if args.target:
        overrides["target"] = args.target  # a target needs the spec file that names it
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
        # On a target, this machine's engine can send its copy of the base over (no registry needed there).
        source = ContainersManager(config=manager.config).backend if args.target else None
        reference = ensure_base_image(
            base, backend=backend, offline_tag=offline_tag, allow_pull=not args.no_pull, source=source, log=say
        )
    image_id = backend.image_id(reference) or "?"
    registry_check = getattr(backend, "registry_check", None)  # a swarm's: every node pulls from it
    if callable(registry_check):
        say(registry_check())
    say(f"ready: Docker {info.version} at {backend.address}; default base {reference} ({image_id[:19]})")
    return 0


# ---------------------------------------------------------------------- sharing (jupyter_containers/share)
def _add_share_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("export", parents=[common], help="write an environment's bundle (spec, lock, files, image)")
    p.add_argument("env", metavar="ENV")
    p.add_argument("-o", "--output", required=True, help="the bundle to write, such as env.tar.gz")
    p.add_argument("--with-image", action="store_true", help="include the image (docker save): no build on import")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import-bundle", parents=[common], help="check a bundle and install its environment here")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("-C", "--into", default=".", help="folder of the containers.toml to add it to (default: .)")
    p.add_argument("--force", action="store_true", help="replace an environment or files of the same name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_import_bundle)

    for name, helptext in (
        ("push", "push an environment's image (and base) to a registry; the digest goes into the lock"),
        ("pull", "pull an environment's image from a registry instead of building it"),
    ):
        p = sub.add_parser(name, parents=[common], help=helptext)
        p.add_argument("env", metavar="ENV")
        p.add_argument("--registry", metavar="HOST/REPO", help="default: registry = in containers.toml")
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=cmd_push if name == "push" else cmd_pull)

    p = sub.add_parser("binder", parents=[common], help="repo2docker / mybinder files for an environment")
    binder_sub = p.add_subparsers(dest="binder_command", metavar="SUBCOMMAND", required=True)
    q = binder_sub.add_parser("export", parents=[common], help="write binder/ pinned from the lock")
    q.add_argument("env", metavar="ENV")
    q.add_argument("-o", "--output", default="binder", help="folder to write (default: binder)")
    q.add_argument("--repo", metavar="OWNER/NAME", help="GitHub repository for the README badge line")
    q.add_argument("--force", action="store_true", help="replace files there that binder export did not write")
    q.set_defaults(func=cmd_binder_export)

    p = sub.add_parser(
        "reproduce",
        parents=[common],
        help="rebuild a notebook's recorded environment, run it again and compare every output",
        description="Rebuild the environment recorded in NOTEBOOK's metadata (its lock), run the notebook again "
        "with the recorded parameters and limits, and compare each output with the recorded one (nbdime). "
        "Exit status: 0 the same, 1 outputs differ, 3 the same environment could not be rebuilt.",
    )
    p.add_argument("notebook", metavar="NOTEBOOK")
    p.add_argument("-o", "--output", metavar="REPORT", help="also write an HTML report (.html) or JSON (.json)")
    p.add_argument(
        "--sanitize",
        "--ignore",
        dest="sanitize",
        action="append",
        default=[],
        metavar="FILE",
        help="nbval sanitizer file ([section] regex: / replace: lines) applied to both sides; repeatable",
    )
    p.add_argument("--rtol", type=float, default=1e-9, help="relative tolerance of numbers (default 1e-9)")
    p.add_argument("--atol", type=float, default=0.0, help="absolute tolerance of numbers (default 0)")
    p.add_argument("--run-output", metavar="NOTEBOOK", help="keep the re-run notebook here (default: not kept)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_reproduce)


def _bare_manager(args: argparse.Namespace) -> Any:
    """A manager for commands that need an engine but no spec file (a bundle's import)."""
    from .config import load_config
    from .errors import SpecError
    from .manager import ContainersManager

    overrides = {"backend_name": args.backend} if getattr(args, "backend", None) else {}
    try:
        return ContainersManager.discover(args.file, **overrides)
    except SpecError:
        if args.file:
            raise
        return ContainersManager(config=load_config(), **overrides)


def cmd_export(args: argparse.Namespace) -> int:
    from .share.bundle import export_bundle
    from .units import format_size

    result = export_bundle(_manager(args), args.env, Path(args.output), with_image=args.with_image)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        what = "spec, lock" + (", image" if result.with_image else "")
        print(f"wrote {result.path} ({what}; {format_size(result.size)}, {result.seconds:.1f}s)")
    return 0


def cmd_import_bundle(args: argparse.Namespace) -> int:
    from .share.bundle import import_bundle

    manager = _bare_manager(args)
    result = import_bundle(Path(args.bundle), Path(args.into), backend=manager.backend, force=args.force)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        image = f"image {result.image_id[:19]} loaded" if result.image_id else "no image (build it with --locked)"
        print(f"imported {result.environment!r} into {result.spec_file} ({image}, {result.seconds:.1f}s)")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from .share.registry import push

    progress = BuildProgress()
    try:
        result = push(_manager(args), args.env, args.registry, on_event=progress)
    finally:
        progress.close()
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(f"pushed {result.reference} ({result.digest}, {result.seconds:.1f}s); the digest is in containers.lock")
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from .share.registry import pull

    result = pull(_manager(args), args.env, args.registry)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        built = f", built on {result.built_on[:19].replace('T', ' ')} UTC" if result.built_on else ""
        print(f"pulled {result.reference} as {result.image}{built} ({result.seconds:.1f}s)")
        for note in result.notes:
            print(f"note: {note}", file=sys.stderr)
    return 0


def cmd_binder_export(args: argparse.Namespace) -> int:
    from .share.binder import export_binder

    result = export_binder(_manager(args), args.env, Path(args.output), repo=args.repo, force=args.force)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {', '.join(result.files)} to {result.folder}")
    return 0


def cmd_spec_from_notebook(args: argparse.Namespace) -> int:
    from .share.notebook import spec_from_notebook

    result = spec_from_notebook(
        Path(args.notebook), Path(args.output), name=args.name, force=args.force, environment=args.environment
    )
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote environment {result.environment!r} to {result.spec_file} and its lock to {result.lock_file}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from .share.reproduce import ReproduceOptions, reproduce

    options = ReproduceOptions(
        sanitizers=tuple(Path(p) for p in args.sanitize),
        rtol=args.rtol,
        atol=args.atol,
        run_output=Path(args.run_output) if args.run_output else None,
        target=args.target,
    )
    manager = _bare_manager(args)
    # --target: a [targets.NAME] of the workspace's spec file (the recorded spec has none) to rebuild and re-run on.
    backend = manager.for_target(args.target).backend if args.target else None
    report = reproduce(
        Path(args.notebook),
        options,
        config=manager.config,
        log=lambda t: print(t, file=sys.stderr),
        backend=backend,
    )
    if args.output:
        report.write(Path(args.output))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.text())
    return report.exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
