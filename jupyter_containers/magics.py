"""IPython magics: ``%%container`` runs a cell in an environment's container, ``%container`` manages them.

Load with ``%load_ext jupyter_containers``. The cell magic keeps one warm container kernel per
(environment, resources) for the life of the local kernel (see :mod:`jupyter_containers.kernel.session`),
so only the first cell pays for the container start. Errors of our own (a bad spec, an unknown
environment, a kernel that ran out of memory) are shown as one line, as the CLI shows them; errors of the
user's code keep the traceback from inside the container.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from .errors import ContainersError, RequestError, SessionError
from .frontend import BuildProgress, format_uptime, resource_arguments, resource_flags, resources_from_flags, table

SUBCOMMANDS = ("list", "build", "use", "status", "stop", "logs", "capture", "execute", "ui")


def _file_argument(func: Any) -> Any:
    return argument("-f", "--file", help="spec file (default: ./containers.toml or ./pyproject.toml)")(func)


def _target_argument(func: Any) -> Any:
    return argument("--target", metavar="NAME", help="the spec file's [targets.NAME] to run on")(func)


def _resource_arguments(timeout_help: str = "per cell: interrupt a cell running longer, e.g. 90s, 30m") -> Any:
    # The CLI's limit flags (same names, same units), derived from the Resources model.
    def decorate(func: Any) -> Any:
        for flags, kwargs in reversed(list(resource_arguments(timeout_help=timeout_help))):
            func = argument(*flags, **kwargs)(func)
        return func

    return decorate


def _names(values: list[str] | None) -> list[str]:
    # ``--in a b`` and ``--in a,b`` alike.
    out: list[str] = []
    for value in values or []:
        out.extend(part for part in value.split(",") if part)
    return list(dict.fromkeys(out))


def _show_cleanly(exc: ContainersError) -> ContainersError:
    # Make IPython print ``ErrorName: message`` without our traceback (the CLI prints one line too).
    lines = str(exc).splitlines() or [""]
    rendered = [f"\x1b[0;31m{type(exc).__name__}\x1b[0m: {lines[0]}", *lines[1:]]
    exc._render_traceback_ = lambda: rendered  # type: ignore[attr-defined]
    return exc


@magics_class
class ContainerMagics(Magics):
    """``%%container`` and ``%container SUBCOMMAND``; state (managers, ``use`` defaults) lives per shell."""

    def __init__(self, shell: Any = None, **kwargs: Any):
        super().__init__(shell, **kwargs)
        self._managers: dict[str, Any] = {}
        self.default_environment: str | None = None
        self.default_file: str | None = None
        self.default_resources: dict[str, Any] = {}
        self.default_target: str | None = None
        self._own_modules: set[str] = set()
        self._known_modules: set[str] = set(sys.modules)
        self._value_modules: set[str] = set()

    # ------------------------------------------------------------------ the magic
    @magic_arguments()
    @argument("env", nargs="?", metavar="ENV", help="environment (default: the one chosen with %%container use)")
    @_file_argument
    @_target_argument
    @_resource_arguments()
    @argument("--in", dest="inputs", nargs="+", action="extend", metavar="NAME", help="variables to send in")
    @argument("--out", dest="outputs", nargs="+", action="extend", metavar="NAME", help="variables to bring back")
    @line_cell_magic
    def container(self, line: str, cell: str | None = None) -> Any:
        """Run a cell in an environment's container, or manage those containers.

        Cell magic: ``%%container ENV [limits] [--in NAME...] [--out NAME...]`` runs the cell in a warm
        container kernel of ENV (started, and built if needed, on first use; kept for later cells with the
        same limits, so its variables persist). ``--in`` sends local variables in before the cell runs,
        ``--out`` brings variables back after it succeeded. ``--timeout`` limits each cell.

        Line magic: ``%container SUBCOMMAND`` with SUBCOMMAND one of
          list                       environments of the spec file (* = a container kernel is running)
          build ENV [--locked]       build an environment's image (no-op when up to date)
          use ENV [limits]           the environment (and limits) of %%container cells without ENV
          status                     running container kernels: environment, limits, container, uptime
          stop [ENV] [--all]         remove container kernels (all of them without ENV)
          logs ENV [--tail N]        the container log of ENV's kernel
          capture [--imported] ENV   write this kernel's packages as environment ENV into the spec file
          execute NOTEBOOK --env ENV [-p NAME VALUE]... [-o OUT] [limits]   run a whole notebook in ENV
                  [--sweep NAME=VALUES]... [--max-parallel N] [--min-parallel N] [--target-utilization U]
                                     one run per combination of values, then a summary table
                  [--target NAME] [--reschedule]   on a swarm target: run it again elsewhere if its node dies
          ui                         the environment picker and containers panel (ipywidgets)
        Each subcommand takes ``-f/--file SPEC`` and ``-h`` for its options.
        """
        # Modules our own machinery imports are not the notebook's: '%container capture --imported' leaves
        # them out (docker, requests, ...), except those that --out values needed. Counting first keeps
        # this off the warm path: a set of sys.modules is built only when something was imported.
        if len(sys.modules) != len(self._known_modules):
            self._known_modules = set(sys.modules)  # imported by the notebook's own cells since our last call
        try:
            if cell is None:
                return self._subcommand(line)
            return self._run_cell(line, cell)
        except ContainersError as exc:
            raise _show_cleanly(exc) from None
        finally:
            if len(sys.modules) != len(self._known_modules):
                current = set(sys.modules)
                self._own_modules |= current - self._known_modules - self._value_modules
                self._known_modules = current

    # ------------------------------------------------------------------ helpers
    def manager(self, spec_file: str | None = None) -> Any:
        """One ContainersManager per spec file (its engine connection is reused between cells)."""
        from .manager import ContainersManager
        from .spec.parse import find_spec_file

        # JUPYTER_CONTAINERS_SPEC_FILE: the spec a whole kernel's cells use (reproduce runs a notebook's
        # %%container cells in the environments it recreated from the notebook's records).
        spec = spec_file or self.default_file or os.environ.get("JUPYTER_CONTAINERS_SPEC_FILE")
        path = Path(spec).expanduser().resolve() if spec else find_spec_file(Path.cwd()).resolve()
        key = str(path)
        manager = self._managers.get(key)
        if manager is None:
            manager = ContainersManager.discover(path)
            self._managers[key] = manager
        return manager

    @staticmethod
    def _raw_resources(args: Any) -> dict[str, Any]:
        return resource_flags(args)

    @staticmethod
    def _resources(raw: dict[str, Any]) -> Any:
        return resources_from_flags(raw)

    @staticmethod
    def _progress() -> Any:
        return BuildProgress(stream=sys.stdout)

    def _session_for(
        self, env: str, raw: dict[str, Any], spec_file: str | None, target: str | None = None
    ) -> tuple[Any, float | None]:
        # The warm session and the cell timeout (given, else the spec's default) for ``env``.
        from .kernel.pool import get_pool

        manager = self.manager(spec_file).for_target(target)
        resources = self._resources(raw)
        progress = self._progress()
        try:
            session = manager.session(env, resources, on_build_event=progress)
        finally:
            progress.close()
        return session, get_pool().effective_resources(manager, env, resources).timeout

    # ------------------------------------------------------------------ %%container
    def _run_cell(self, line: str, cell: str) -> Any:
        args = parse_argstring(self.container, line)
        env = args.env or self.default_environment
        if not env:
            raise UsageError("which environment? use '%%container ENV', or choose one with '%container use ENV'")
        raw = dict(self.default_resources) if env == self.default_environment else {}
        raw.update(self._raw_resources(args))
        target = args.target or (self.default_target if env == self.default_environment else None)
        session, timeout = self._session_for(env, raw, args.file, target)
        _send_record(session)
        assert self.shell is not None  # magics are registered on a shell
        user_ns = self.shell.user_ns
        inputs = _names(args.inputs)
        if inputs:
            missing = [name for name in inputs if name not in user_ns]
            if missing:
                raise RequestError(f"no variable named {missing[0]!r} in this notebook")
            session.push({name: user_ns[name] for name in inputs})
        result = session.execute(cell, timeout=timeout, execution_count=_cell_number(self.shell))
        outputs = _names(args.outputs)
        if outputs:
            before = set(sys.modules)
            try:
                user_ns.update(session.pull(outputs))
            finally:
                self._value_modules |= set(sys.modules) - before
        return result

    # ------------------------------------------------------------------ %container SUBCOMMAND
    def _subcommand(self, line: str) -> Any:
        words = line.strip().split(None, 1)
        if not words:
            raise UsageError(f"%container needs a subcommand: {', '.join(SUBCOMMANDS)}; see %container?")
        name, rest = words[0], (words[1] if len(words) > 1 else "")
        if name not in SUBCOMMANDS:
            raise UsageError(
                f"unknown subcommand {name!r}; use one of {', '.join(SUBCOMMANDS)} "
                "(to run a cell in a container, use the cell magic %%container ENV)"
            )
        handler = getattr(self, f"_cmd_{name}")
        try:
            words = shlex.split(rest)
        except ValueError:
            words = []
        if {"-h", "--help"} & set(words):
            parser = _execute_parser() if name == "execute" else handler.parser
            print(parser.format_help())
            return None
        return handler(rest)

    @magic_arguments(name="container list")
    @_file_argument
    def _cmd_list(self, rest: str) -> None:
        """The environments of the spec file; * marks those with a running container kernel."""
        from .kernel.pool import get_pool

        args = parse_argstring(self._cmd_list, rest)
        manager = self.manager(args.file)
        spec = manager.spec()
        running = {s.environment for s in get_pool().list() if s.spec_file == manager.spec_file()}
        print(f"environments in {spec.path}:")
        rows = [("", "ENVIRONMENT", "DEFAULT LIMITS", "DESCRIPTION")]
        for env_name, env in spec.environments.items():
            marker = "*" if env_name in running else ""
            shown = env_name + (" (use)" if env_name == self.default_environment else "")
            rows.append((marker, shown, env.resources.describe(), env.description or ""))
        table(rows)
        if running:
            print("* a container kernel is running (%container status)")

    @magic_arguments(name="container build")
    @argument("env", metavar="ENV")
    @argument("--locked", action="store_true", help="install exactly the versions in containers.lock")
    @_file_argument
    def _cmd_build(self, rest: str) -> None:
        """Build an environment's image, with its progress in the notebook."""
        args = parse_argstring(self._cmd_build, rest)
        manager = self.manager(args.file)
        progress = self._progress()
        try:
            result = manager.build(args.env, locked=args.locked, on_event=progress)
        finally:
            progress.close()
        print(f"{result.image} ({'built' if result.built else 'up to date'}, {result.seconds:.2f}s)")

    @magic_arguments(name="container use")
    @argument("env", metavar="ENV")
    @_file_argument
    @_target_argument
    @_resource_arguments()
    def _cmd_use(self, rest: str) -> None:
        """The environment (and limits) of %%container cells that name none."""
        args = parse_argstring(self._cmd_use, rest)
        manager = self.manager(args.file).for_target(args.target)  # an unknown target fails here, named
        raw = self._raw_resources(args)
        effective = manager.resources(args.env, self._resources(raw))  # validates the name and the limits
        self.default_environment = args.env
        self.default_resources = raw
        self.default_target = args.target
        if args.file:
            self.default_file = args.file
        print(f"%%container cells without an environment run in {args.env!r} ({effective.describe()})")

    @magic_arguments(name="container status")
    def _cmd_status(self, rest: str) -> None:
        """Running container kernels of this notebook."""
        from .kernel.pool import get_pool

        parse_argstring(self._cmd_status, rest)
        sessions = get_pool().list()
        spares = get_pool().spares()
        if not sessions and not spares:
            print("no container kernels running")
            return
        rows = [("ENVIRONMENT", "LIMITS", "CONTAINER", "UPTIME", "SPEC FILE")]
        for s in [*sessions, *spares]:
            rows.append(
                (
                    s.environment + (" (spare)" if s in spares else ""),
                    s.resources.describe(),
                    (s.container_id or "")[:12],
                    format_uptime(s.uptime),
                    str(s.spec_file),
                )
            )
        table(rows)

    @magic_arguments(name="container stop")
    @argument("env", nargs="?", metavar="ENV", help="stop the container kernels of ENV only")
    @argument("--all", action="store_true", help="stop every container kernel (the default without ENV)")
    def _cmd_stop(self, rest: str) -> None:
        """Remove container kernels (and their variables)."""
        from .kernel.pool import get_pool

        args = parse_argstring(self._cmd_stop, rest)
        if args.env and args.all:
            raise UsageError("give ENV or --all, not both")
        stopped = get_pool().stop(None if args.all else args.env)
        if not stopped:
            print("no container kernels running" + (f" for {args.env!r}" if args.env else ""))
            return
        print(f"stopped {len(stopped)} container kernel{'s' if len(stopped) != 1 else ''}:")
        for s in stopped:
            print(f"  {s.describe()}")

    @magic_arguments(name="container logs")
    @argument("env", metavar="ENV")
    @argument("--tail", type=int, default=None, help="only the last N lines")
    def _cmd_logs(self, rest: str) -> None:
        """The container log of ENV's kernel (the kernel's own messages, not the cells' output)."""
        from .kernel.pool import get_pool

        args = parse_argstring(self._cmd_logs, rest)
        sessions = [s for s in get_pool().list() if s.environment == args.env]
        if not sessions:
            raise SessionError(f"no container kernel of {args.env!r} is running; %container status lists them")
        for s in sessions:
            if len(sessions) > 1:
                print(f"==> {s.describe()} {(s.container_id or '')[:12]} <==")
            text = s.logs(tail=args.tail if args.tail is not None else "all")
            print(text, end="" if text.endswith("\n") or not text else "\n")

    @magic_arguments(name="container capture")
    @argument("env", metavar="ENV", help="name of the environment to write")
    @argument("--imported", action="store_true", help="only the packages this kernel has imported (sys.modules)")
    @argument("--force", action="store_true", help="replace an environment of the same name")
    @_file_argument
    def _cmd_capture(self, rest: str) -> None:
        """Write this (local) kernel's packages into the spec file as environment ENV."""
        from .errors import SpecNotFoundError
        from .spec.capture import capture_environment
        from .spec.parse import find_spec_file
        from .spec.writer import add_environment_to_file

        args = parse_argstring(self._cmd_capture, rest)
        chosen = args.file or self.default_file
        if chosen:
            path = Path(chosen)
        else:
            try:
                path = find_spec_file(Path.cwd())
            except SpecNotFoundError:
                path = Path.cwd() / "containers.toml"
        if args.imported:
            modules = [
                name
                for name in list(sys.modules)
                if name not in self._own_modules and name.partition(".")[0] != "jupyter_containers"
            ]
            result = capture_environment(args.env, imported=True, modules=modules)
        else:
            result = capture_environment(args.env)
        add_environment_to_file(path, result.environment, result.notes, force=args.force)
        for note in result.notes:
            print(f"note: {note}")
        packages = len(result.environment.pip)
        print(f"wrote environment {result.environment.name!r} ({packages} packages) to {path}")

    def _cmd_execute(self, rest: str) -> None:
        """Run a whole notebook in an environment's container: ``jupyter-containers execute`` from here.

        The options are the command line's (one definition in jupyter_containers.frontend; ``%container
        execute -h`` lists them); the notebook's spec file is the default ``-f``. ``--reschedule`` is the
        command line's too (a swarm target only); ``%%container`` cells have none: a session kernel is never
        rescheduled, its variables would be lost (docs/scale-out.md).
        """
        from .errors import RunError
        from .frontend import check_execute_spec_file, execute_from_args
        from .manager import ContainersManager

        try:
            args = _execute_parser().parse_args(shlex.split(rest))
        except SystemExit as exc:  # argparse already printed the usage error
            raise UsageError("see the usage above ('%container execute -h' for every option)") from exc
        check_execute_spec_file(args.file)
        spec = args.file or self.default_file
        folder = Path(args.notebook).expanduser().resolve().parent
        manager = self.manager(spec) if spec else ContainersManager.discover(search_from=[folder])
        manager = manager.for_target(args.target)  # an unknown name fails here, naming it
        with rescheduled(args, manager):
            status = execute_from_args(args, manager, stream=sys.stdout)
        if status:
            raise RunError(f"the notebook run ended with exit status {status}; see the messages above")

    @magic_arguments(name="container ui")
    @_file_argument
    def _cmd_ui(self, rest: str) -> Any:
        """The environment picker, build button and containers panel."""
        from .widgets import ContainersUI

        args = parse_argstring(self._cmd_ui, rest)
        return ContainersUI(self.manager(args.file))


def _send_record(session: Any) -> None:
    """Hand the front end the record of the environment this cell runs in (share/metadata.py): JupyterLab's
    extension writes it into the open notebook's metadata, so a notebook of ``%%container`` cells carries
    every environment it used. A comm, not an output: nothing lands in the cell, and a front end that does
    not know the comm's target (nbclient, a terminal) ignores it."""
    from .kernel.session import spec_stamp
    from .share.metadata import COMM_TARGET, safe_environment_record

    # Once per session, and again when its spec file, lock or image changes: making the record and its comm
    # cost about 3 ms of every warm cell (the notebook already holds an unchanged record).
    stamp = (spec_stamp(session.spec_file), spec_stamp(session.spec_file.parent / "containers.lock"), session.image_id)
    if getattr(session, "recorded", None) == stamp:
        return
    record = safe_environment_record(
        session.manager,
        session.environment,
        image=session.image,
        image_id=session.image_id,
        resources=session.resources.to_dict(),
        target=session.manager.target,
    )
    if record is None:
        return
    try:
        from comm import create_comm

        create_comm(target_name=COMM_TARGET, data=record).close()
    except Exception:  # noqa: BLE001 - recording must never fail the cell (no kernel, a closed channel)
        return
    session.recorded = stamp


def _execute_parser() -> Any:
    import argparse

    from .frontend import add_execute_arguments

    parser = argparse.ArgumentParser(prog="%container execute", add_help=False)
    parser.add_argument("-f", "--file", help="spec file (default: next to the notebook, else ./containers.toml)")
    add_execute_arguments(parser)
    parser.add_argument(
        "--target", metavar="NAME", help="the [targets.NAME] to run on (default: the environment's own target =)"
    )
    parser.add_argument(
        "--reschedule",
        action="store_true",
        help="on a swarm target: if the node running it goes down, run it once more from the start on another "
        "node (the target's reschedule_on_node_failure, for this run)",
    )
    return parser


@contextmanager
def rescheduled(args: Any, manager: Any) -> Iterator[None]:
    """``%container execute --reschedule``: while the run lasts, the swarm backend that runs ``args.env`` reruns
    it once on another node if its node goes down, as the command line's ``--reschedule`` does for one command.
    Only for this run: the notebook's kernel keeps its managers (and their backends) for later cells, which get
    the target's own ``reschedule_on_node_failure`` again.

    Raises:
        RequestError: the environment does not run on a swarm target (no node can go down under it there),
            naming where it runs, before anything is built or run.
    """
    if not args.reschedule:
        yield
        return
    from .frontend import rescheduling_backend

    backend = rescheduling_backend(manager, args.env)
    before = backend.reschedule_on_node_failure
    backend.reschedule_on_node_failure = True
    try:
        yield
    finally:
        backend.reschedule_on_node_failure = before


def load_ipython_extension(ip: Any) -> None:
    """``%load_ext jupyter_containers``: register ``%%container`` and ``%container``, and start the spare
    kernels that ``c.ContainerSessions.pool`` asks for (in the background)."""
    from .kernel.pool import get_pool

    magics = ContainerMagics(ip)
    ip.register_magics(magics)
    get_pool().prepare(lambda: start_pool(magics))


def start_pool(magics: ContainerMagics) -> list[tuple]:
    """Keep the spares of ``c.ContainerSessions.pool`` for the spec file of the current folder (none without
    one); returns their session keys."""
    from .errors import SpecNotFoundError
    from .kernel.pool import ContainerSessions, get_pool

    try:
        manager = magics.manager()
    except SpecNotFoundError:
        return []
    entries = ContainerSessions(config=manager.config).entries()
    keys = [get_pool().keep_spares(manager, env, resources, size) for env, resources, size in entries]
    if keys:
        # What the first cell imports for its record (share/metadata.py): here, in the background, not in that cell.
        import comm  # noqa: F401

        from .share import metadata  # noqa: F401
    return keys


def unload_ipython_extension(ip: Any) -> None:
    """``%unload_ext jupyter_containers``: stop this kernel's container kernels and drop the magics."""
    from .kernel.pool import get_pool

    get_pool().stop_spares()
    get_pool().stop_all()
    magics = ip.magics_manager.magics
    for kind in ("line", "cell"):
        magics[kind].pop("container", None)


def _cell_number(shell: Any) -> int | None:
    """The number the notebook shows for the running cell (``In [7]``): the index IPython stored its input at
    (``shell.execution_count`` is already the next one while a cell runs, under ipykernel 7)."""
    try:
        return len(shell.history_manager.input_hist_parsed) - 1
    except AttributeError:
        return None
