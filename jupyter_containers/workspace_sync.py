"""/workspace on an engine that cannot see this machine's folders: a volume, synced by manifest.

Every (workspace, user, engine) gets one named volume holding /workspace. Before a run, kernel or session
starts, the files that changed here since the last sync (by size and mtime_ns, so unchanged large data is
never re-sent) are copied into it and files deleted here are deleted there; after a ``run``/``execute`` (and
when a kernel or session stops) the files the container created or changed come back. Everything goes
through the engine's API (``put_archive``/``get_archive`` on a short-lived helper container with the volume,
never a bind mount), so it works over ssh:// and tcp+TLS alike.

Conflicts: a file changed both here and in the container since the last sync keeps the local version; the
container's is saved next to it as ``NAME.remote`` and a warning says so. Files the container deleted are not
deleted here (they come back on the next sync). Symlinks, empty folders and the names in
``c.WorkspaceSync.exclude`` are not synced.

On a Docker Swarm (a ``nodes`` table, no shared ``workspace``) each node has its own volume of that name, and its
own record here (the state file is keyed by the engine's address): :class:`SwarmWorkspaces` is the hook the swarm
backend calls once Swarm placed a task (its node known), to sync that node's volume before the task's command
starts, and again when its service is removed.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import io
import json
import os
import stat
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from traitlets import Float, List, Unicode
from traitlets.config import LoggingConfigurable

from .backends.base import RunRequest, labels
from .errors import RunError
from .images.dockerfile import WORKSPACE
from .paths import cache_dir, file_lock
from .spec.model import Resources

Manifest = dict[str, list[int]]


def _walk(root: str, exclude: set[str]) -> dict[str, list[int]]:
    """``{relative path: [size, mtime_ns]}`` of the regular files below ``root``, skipping ``exclude`` names.

    The same function walks the workspace here and the volume in the container (its source is the head of
    :func:`_script`), so that both sides compare alike: standard library only, no annotations needed at run
    time (the environment's Python may be as old as 3.8).
    """
    out: dict[str, list[int]] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in exclude]
        for name in files:
            if name in exclude:
                continue
            path = os.path.join(folder, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                out[os.path.relpath(path, root)] = [st.st_size, st.st_mtime_ns]
    return out


@functools.cache
def _script() -> str:
    """What runs in the environment's image: :func:`_walk`'s source, then the mode's work (built on first use,
    not at import: kernels import this module for :class:`LiveSync`)."""
    return (
        "from __future__ import annotations\n"
        "import json, os, stat, sys, tarfile\n" + inspect.getsource(_walk) + _SCRIPT_BODY
    )


_SCRIPT_BODY = r"""
root, mode, exclude = "/workspace", sys.argv[1], set(json.loads(sys.argv[2]))
if mode == "live":
    # In a running kernel's own container: only the files changed since the last sync, none when none did.
    try:
        with open("/tmp/.jc-live/base.json") as fh:
            base = json.load(fh)
    except (OSError, ValueError):
        base = {}
    now = _walk(root, exclude)
    changed = sorted(rel for rel, figures in now.items() if base.get(rel) != figures)
    if changed:
        os.makedirs("/tmp/.jc-live/out", exist_ok=True)
        with tarfile.open("/tmp/.jc-live/out/changes.tar", "w") as tar:
            for rel in changed:
                tar.add(os.path.join(root, rel), arcname=rel, recursive=False)
        with open("/tmp/.jc-live/out/manifest.json", "w") as fh:
            json.dump(now, fh)
    print("changed" if changed else "unchanged")
elif mode == "up":
    with open("/tmp/jc-sync/delete.json") as fh:
        for rel in json.load(fh):
            try:
                os.unlink(os.path.join(root, rel))
            except OSError:
                pass
    os.makedirs("/tmp/jc-out", exist_ok=True)
    with open("/tmp/jc-out/manifest.json", "w") as fh:
        json.dump(_walk(root, exclude), fh)
else:
    with open("/tmp/jc-sync/base.json") as fh:
        base = json.load(fh)
    now = _walk(root, exclude)
    os.makedirs("/tmp/jc-out", exist_ok=True)
    with tarfile.open("/tmp/jc-out/changes.tar", "w") as tar:
        for rel, figures in sorted(now.items()):
            if base.get(rel) != figures:
                tar.add(os.path.join(root, rel), arcname=rel, recursive=False)
    with open("/tmp/jc-out/manifest.json", "w") as fh:
        json.dump(now, fh)
"""


class WorkspaceSync(LoggingConfigurable):
    """The volume of one manager's workspace on its (remote) engine, and the two directions of sync."""

    exclude = List(
        Unicode(),
        [".git", "__pycache__", ".ipynb_checkpoints", ".venv", "node_modules", ".mypy_cache", ".pytest_cache"],
        config=True,
        help="File and folder names never synced to or from a remote engine's workspace volume.",
    )
    live_interval = Float(
        2.0,
        config=True,
        help="Seconds between checks for files a running remote kernel or %%container session wrote (they come "
        "back while it runs, not only when it stops); 0: only when it stops. A check with nothing changed is "
        "one process started in the kernel's container (a walk of /workspace by size and mtime).",
    )

    def __init__(self, manager: Any, *, backend: Any = None, **kwargs: Any):
        """``backend``: the engine holding the volume, when it is not ``manager.backend`` (a swarm node's)."""
        super().__init__(parent=manager, **kwargs)
        self.manager = manager
        self.backend = backend if backend is not None else manager.backend
        self.workspace = manager.workspace_dir()
        self.volume = volume_name(self.workspace)
        self.state_file = state_file(self.backend.address, self.volume)
        #: Figures of the last sync: files sent and fetched, bytes, seconds.
        self.last: dict[str, Any] = {}

    # ------------------------------------------------------------------ state
    def _load(self) -> dict[str, Manifest]:
        try:
            data = json.loads(self.state_file.read_text())
            if data.get("volume") == self.volume:
                return {"local": data["local"], "remote": data["remote"]}
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return {"local": {}, "remote": {}}

    def _save(self, state: Mapping[str, Manifest]) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"volume": self.volume, **state}))
        tmp.replace(self.state_file)

    def _volume_exists(self) -> bool:
        return self.volume in self.backend.list_volumes({"io.jupyter.containers.role": "workspace"})

    def local_manifest(self) -> Manifest:
        return _walk(str(self.workspace), set(self.exclude))

    # ------------------------------------------------------------------ helper containers
    def _helper(self, image: str, mode: str) -> Any:
        request = RunRequest(
            image=image,
            command=["python", "-c", _script(), mode, json.dumps(sorted(self.exclude))],
            resources=Resources(network=False),
            mounts=[self.mount()],
            labels=labels(role="sync", **self.manager.ownership()),
            working_dir="/tmp",
        )
        return self.backend.create(request)

    def mount(self) -> Any:
        from .backends.base import Mount

        return Mount(self.volume, WORKSPACE, type="volume")

    def _run_helper(self, container: Any, doing: str) -> None:
        container.start()
        code = container.wait(300)
        if code != 0:
            raise RunError(
                f"{doing} the workspace volume {self.volume} on {self.backend.address} failed (exit code {code}): "
                + " ".join(container.logs(tail=5).split())[-300:]
            )

    def _ensure_volume(self) -> None:
        if self._volume_exists():
            return
        # Created with our labels (an implicit volume would have none: prune could not find it).
        self.backend.create_volume(
            self.volume, labels=labels(role="workspace", **{k: v for k, v in self.manager.scope().items()})
        )

    # ------------------------------------------------------------------ up
    def up(self, image: str, *, fresh: bool = False) -> dict[str, Any]:
        """Make the volume hold this workspace: send what changed here, delete what was deleted here.

        ``fresh``: the volume was just created (a swarm node's engine made it for a task), so it is empty whatever
        the record here says: everything is sent (and the record is dropped first, so that a send cut short is
        not taken for a complete one next time).

        Returns figures (``sent`` files, ``bytes``, ``deleted``, ``seconds``). With nothing to do it costs one
        engine call (the volume still exists).
        """
        started = time.perf_counter()
        with file_lock(f"sync:{self.backend.address}:{self.volume}"):
            if fresh:
                self.state_file.unlink(missing_ok=True)
            state = self._load() if self._volume_exists() else {"local": {}, "remote": {}}
            local = self.local_manifest()
            send = sorted(p for p, figures in local.items() if state["local"].get(p) != figures)
            delete = sorted(p for p in state["local"] if p not in local)
            if not send and not delete and state["remote"]:
                self.last = {"sent": 0, "bytes": 0, "deleted": 0, "seconds": time.perf_counter() - started}
                return self.last
            self._ensure_volume()
            container = self._helper(image, "up")
            try:
                uid, _, gid = self.backend.container_user().partition(":")
                sent_bytes = 0
                with tempfile.TemporaryFile() as fh:
                    with tarfile.open(fileobj=fh, mode="w", format=tarfile.PAX_FORMAT) as tar:
                        for rel in _parents(send):
                            tar.addfile(_dir_info(rel, int(uid), int(gid or uid)))
                        for rel in send:
                            path = self.workspace / rel
                            try:
                                info = tar.gettarinfo(str(path), arcname=rel)
                            except OSError:
                                continue
                            info.uid, info.gid, info.uname, info.gname = int(uid), int(gid or uid), "", ""
                            with open(path, "rb") as src:
                                tar.addfile(info, src)
                            sent_bytes += info.size
                    fh.seek(0)
                    container.put_archive(WORKSPACE, fh.read())
                container.put_archive("/tmp", _tar({"jc-sync/delete.json": json.dumps(delete).encode()}, uid, gid))
                self._run_helper(container, "updating")
                remote = json.loads(_read_member(container, "manifest.json") or b"{}")
            finally:
                container.remove()
            self._save({"local": local, "remote": remote})
        self.last = {
            "sent": len(send),
            "bytes": sent_bytes,
            "deleted": len(delete),
            "seconds": time.perf_counter() - started,
        }
        return self.last

    # ------------------------------------------------------------------ down
    def down(self, image: str, *, warn: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Copy the files the container created or changed back here (see the module's note on conflicts).

        Returns figures (``fetched`` files, ``bytes``, ``conflicts`` (paths), ``seconds``).
        """
        started = time.perf_counter()
        warn = warn or (lambda text: self.log.warning("%s", text))
        with file_lock(f"sync:{self.backend.address}:{self.volume}"):
            state = self._load()
            if not self._volume_exists():
                return {"fetched": 0, "bytes": 0, "conflicts": [], "seconds": 0.0}
            container = self._helper(image, "down")
            try:
                uid, _, gid = self.backend.container_user().partition(":")
                container.put_archive(
                    "/tmp", _tar({"jc-sync/base.json": json.dumps(state["remote"]).encode()}, uid, gid)
                )
                self._run_helper(container, "reading")
                figures = self._fetch_changes(container, "/tmp/jc-out", state, warn)
            finally:
                container.remove()
        self.last = {**figures, "seconds": time.perf_counter() - started}
        return self.last

    def _fetch_changes(
        self, container: Any, folder: str, state: dict[str, Manifest], warn: Callable[[str], None]
    ) -> dict[str, Any]:
        """Bring back the ``changes.tar`` and ``manifest.json`` that the script left in ``folder`` of
        ``container``, apply the changes here and save the new state (the caller holds the sync lock)."""
        name = Path(folder).name
        with tempfile.TemporaryFile() as fh:
            for chunk in container.get_archive(folder):
                fh.write(chunk)
            fh.seek(0)
            with tarfile.open(fileobj=fh) as outer:
                manifest = _member(outer, f"{name}/manifest.json")
                changes = _member(outer, f"{name}/changes.tar")
                remote = json.loads(manifest.read() if manifest else b"{}")
                fetched, size, conflicts = self._apply(changes, state, warn)
        self._save({"local": state["local"], "remote": remote})
        return {"fetched": fetched, "bytes": size, "conflicts": conflicts}

    def _apply(
        self, changes: Any, state: dict[str, Manifest], warn: Callable[[str], None]
    ) -> tuple[int, int, list[str]]:
        fetched = size = 0
        conflicts: list[str] = []
        if changes is None:
            return 0, 0, conflicts
        root = self.workspace.resolve()
        with tarfile.open(fileobj=changes) as tar:
            for member in tar:
                if not member.isfile():
                    continue
                target = (root / member.name).resolve()
                if root not in target.parents:
                    continue  # never outside the workspace, whatever the container wrote
                rel = str(target.relative_to(root))
                data = tar.extractfile(member)
                if data is None:
                    continue
                known = state["local"].get(rel)
                try:
                    st = target.lstat()
                    now = [st.st_size, st.st_mtime_ns]
                except FileNotFoundError:
                    now = None
                if now is not None and known != now:
                    # Changed here too since the last sync (or new here): keep ours, put theirs beside it.
                    conflicts.append(rel)
                    target = target.with_name(target.name + ".remote")
                    warn(
                        f"jupyter-containers: {rel} changed both here and in the container; kept this one, the "
                        f"container's is {rel}.remote"
                    )
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{target.name}.jc-sync")
                with open(tmp, "wb") as out:
                    while chunk := data.read(1 << 20):
                        out.write(chunk)
                os.utime(tmp, ns=(int(member.mtime * 1e9),) * 2)
                os.chmod(tmp, (member.mode & 0o777) | 0o600)
                tmp.replace(target)
                fetched += 1
                size += member.size
                if target.name == Path(rel).name:
                    st = target.stat()
                    state["local"][rel] = [st.st_size, st.st_mtime_ns]
        return fetched, size, conflicts

    # ------------------------------------------------------------------ down, while a kernel runs
    def down_live(self, container: Any, *, warn: Callable[[str], None] | None = None) -> dict[str, Any]:
        """:meth:`down` through a running kernel's own container (which has the volume), not a helper one.

        The container's walk compares /workspace with the manifest of the last sync (copied in once per change
        of it); only files that changed since come back. Nothing changed: one ``docker exec``.
        """
        started = time.perf_counter()
        warn = warn or (lambda text: self.log.warning("%s", text))
        with file_lock(f"sync:{self.backend.address}:{self.volume}"):
            state = self._load()
            uid, _, gid = self.backend.container_user().partition(":")
            base = json.dumps(state["remote"], sort_keys=True).encode()
            digest = hashlib.sha256(base).hexdigest()
            if self.__dict__.get("_live_base") != (container.id, digest):
                container.put_archive("/tmp", _tar({".jc-live/base.json": base}, uid, gid))
                self.__dict__["_live_base"] = (container.id, digest)
            answer = _exec_output(container, ["python", "-c", _script(), "live", json.dumps(sorted(self.exclude))])
            if "unchanged" in answer or "changed" not in answer:
                return {"fetched": 0, "bytes": 0, "conflicts": [], "seconds": time.perf_counter() - started}
            figures = self._fetch_changes(container, "/tmp/.jc-live/out", state, warn)
        self.last = {**figures, "seconds": time.perf_counter() - started}
        return self.last

    def remove(self) -> None:
        """Remove the volume (and this machine's record of it)."""
        self.backend.remove_volume(self.volume)
        self.state_file.unlink(missing_ok=True)


def state_file(address: str, volume: str) -> Path:
    """This machine's record of what ``volume`` on the engine at ``address`` holds (prune removes it with the
    volume)."""
    return cache_dir() / "sync" / (hashlib.sha256(f"{address}|{volume}".encode()).hexdigest()[:32] + ".json")


def volume_name(workspace: Path) -> str:
    """The volume holding ``workspace`` on an engine: one per (this host, user, workspace folder)."""
    key = f"{os.uname().nodename}:{os.getuid()}:{workspace}"
    return "jupyter-containers-ws-" + hashlib.sha256(key.encode()).hexdigest()[:20]


class SwarmWorkspaces:
    """The per-node workspace volumes of a swarm target: :attr:`SwarmBackend.workspace_hook
    <jupyter_containers.backends.swarm.SwarmBackend.workspace_hook>` for a manager whose workspace mode is ``sync``.

    Swarm places a task; the backend calls :meth:`up` with that node's engine while the task waits for its
    go-ahead, and :meth:`down` when its service is removed. One :class:`WorkspaceSync` per node, so that each node's
    volume has its own record of what it holds (a task on another node next time gets only what that node lacks).
    """

    def __init__(self, manager: Any):
        self.manager = manager
        self.volume = volume_name(manager.workspace_dir())
        self._syncs: dict[str, WorkspaceSync] = {}
        self._lock = threading.Lock()

    def for_node(self, node: str, engine: Any) -> WorkspaceSync:
        """The :class:`WorkspaceSync` of ``node``'s volume (``engine``: its :class:`DockerBackend`)."""
        with self._lock:
            found = self._syncs.get(node)
            if found is None or found.backend is not engine:
                found = self._syncs[node] = WorkspaceSync(self.manager, backend=engine)
            return found

    def up(self, node: str, engine: Any, image: str, *, fresh: bool = False) -> dict[str, Any]:
        return self.for_node(node, engine).up(image, fresh=fresh)

    def current_on(self, engines: Mapping[str, Any]) -> bool:
        """Whether the volume on every node of ``engines`` (node → its engine) holds this workspace as it is now:
        each node's record matches the files here (its :meth:`WorkspaceSync.up` would send and delete nothing)
        and its volume still exists (a volume removed by hand would come back empty). A task may then start at
        once wherever Swarm puts it, without waiting to be synced: what a sweep, or any run after the first on
        an unchanged workspace, does. One walk here, one volume listing per node, in parallel."""
        from concurrent.futures import ThreadPoolExecutor

        syncs = [self.for_node(node, engine) for node, engine in engines.items()]
        if not syncs:
            return False
        local = syncs[0].local_manifest()
        for sync in syncs:
            state = sync._load()
            if not state["remote"] or state["local"] != local:
                return False
        with ThreadPoolExecutor(len(syncs)) as pool:
            return all(pool.map(lambda sync: sync._volume_exists(), syncs))

    def down(self, node: str, engine: Any, image: str) -> dict[str, Any]:
        return self.for_node(node, engine).down(image)


class LiveSync:
    """Brings back, every ``live_interval`` seconds while a remote kernel runs, the files it wrote
    (:meth:`WorkspaceSync.down_live`); :meth:`poke` asks for a check now (e.g. after a cell)."""

    def __init__(self, sync: WorkspaceSync, container: Any, *, warn: Callable[[str], None] | None = None):
        self.sync, self.container, self.warn = sync, container, warn
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="jupyter-containers-live-sync", daemon=True)

    def start(self) -> LiveSync:
        if self.sync.live_interval > 0:
            self._thread.start()
        return self

    def poke(self) -> None:
        self._wake.set()

    def check(self) -> dict[str, Any] | None:
        """One check now, in this thread (None: the kernel's container is gone or the engine refused)."""
        from .errors import ContainersError

        with self._lock:
            if self._stopped.is_set():
                return None
            try:
                return self.sync.down_live(self.container, warn=self.warn)
            except (ContainersError, OSError, ValueError, tarfile.TarError) as exc:
                self.sync.log.debug("live sync of %s: %s", self.sync.volume, exc)
                return None

    def stop(self) -> None:
        """No more checks (the kernel stops: its final sync is :meth:`WorkspaceSync.down`)."""
        with self._lock:
            self._stopped.set()
        self._wake.set()

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self.sync.live_interval)
            self._wake.clear()
            if not self._stopped.is_set():
                self.check()


def _exec_output(container: Any, command: list[str], limit: int = 1 << 16) -> str:
    """The stdout of ``command`` run in ``container`` (the engine's 8-byte-header frames taken apart)."""
    import struct

    stream = container.exec_stream(command)
    try:
        data = b""
        while chunk := stream.recv(1 << 16):
            data += chunk
            if len(data) > limit:
                break
    finally:
        stream.close()
    out = b""
    while len(data) >= 8:
        kind, length = struct.unpack(">BxxxI", data[:8])
        if kind == 1:
            out += data[8 : 8 + length]
        data = data[8 + length :]
    return out.decode("utf-8", "replace")


def _parents(paths: list[str]) -> list[str]:
    found: set[str] = set()
    for rel in paths:
        parent = Path(rel).parent
        while str(parent) not in (".", ""):
            found.add(str(parent))
            parent = parent.parent
    return sorted(found, key=lambda p: (p.count("/"), p))


def _dir_info(rel: str, uid: int, gid: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(rel)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.uid, info.gid = uid, gid
    info.mtime = int(time.time())
    return info


def _tar(files: Mapping[str, bytes], uid: str, gid: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        folders = _parents(list(files))
        for rel in folders:
            tar.addfile(_dir_info(rel, int(uid), int(gid or uid)))
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
            info.uid, info.gid = int(uid), int(gid or uid)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _member(tar: tarfile.TarFile, name: str) -> Any:
    try:
        return tar.extractfile(name)
    except KeyError:
        return None


def _read_member(container: Any, name: str) -> bytes | None:
    buf = io.BytesIO(b"".join(container.get_archive(f"/tmp/jc-out/{name}")))
    with tarfile.open(fileobj=buf) as tar:
        member = next((m for m in tar.getmembers() if m.isfile()), None)
        extracted = tar.extractfile(member) if member is not None else None
        return extracted.read() if extracted is not None else None
