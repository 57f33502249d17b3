"""Remote-target benchmark: the same ``%%container`` measurements on the local engine and on a remote one.

Run: ``.venv/bin/python benchmarks/remote.py [--runs 30] [--containers 20]``

The remote engine is a Docker-in-Docker engine on the local one (tests/engines.py), reached as two targets:
``tls`` (tcp+TLS to 127.0.0.1, kernel ports on the engine host's address, CurveZMQ) and ``ssh`` (ssh://, the
engine socket and kernel ports through one OpenSSH connection). Measured in one run, on each of local, tls,
ssh, with a workspace outside /tmp (synced into a volume on the remote targets):

1. warm round trip of a session cell (``pass``; median of ``--runs``); goal: remote ≤ local + 2 ms; and the
   same for a session with ``--network none`` (on remote targets its channels go through the exec relay,
   kernel/relay.py; locally through ipc sockets as always);
2. cold start: ``manager.session()`` from nothing to a ready kernel plus the first cell's output (median of
   3; the image exists); goal ≤ 1.5 s;
3. a 100 MB float64 array in and out (median of 3); goal ≤ 1.0 s each;
4. the workspace's containers listed with usage (``manager.containers()``, what GET /containers answers)
   with ``--containers`` idle containers running there (median of 3); goal ≤ 300 ms.

Progress goes to stderr, the table to stdout. Everything it created (engine, images there, folder) is removed.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def measure(manager: Any, runs: int, containers: int) -> dict[str, float]:
    import numpy as np

    from jupyter_containers.backends.base import RunRequest, labels

    out: dict[str, float] = {}
    colds = []
    for _ in range(3):
        started = time.perf_counter()
        session = manager.session("bench")
        session.execute("print('first')", stdout=lambda _: None)
        colds.append(time.perf_counter() - started)
        session.stop()
    out["cold start (s)"] = statistics.median(colds)
    session = manager.session("bench")
    for _ in range(5):
        session.execute("pass")
    trips = []
    for _ in range(runs):
        started = time.perf_counter()
        session.execute("pass")
        trips.append(time.perf_counter() - started)
    out["warm round trip (ms)"] = statistics.median(trips) * 1000
    from jupyter_containers.spec.model import Resources

    offline = manager.session("bench", Resources(network=False))
    for _ in range(5):
        offline.execute("pass")
    trips = []
    for _ in range(runs):
        started = time.perf_counter()
        offline.execute("pass")
        trips.append(time.perf_counter() - started)
    out["warm round trip, no network (ms)"] = statistics.median(trips) * 1000
    offline.stop()
    array = np.random.default_rng(0).random(100 * 2**20 // 8)
    ins, outs = [], []
    for _ in range(3):
        started = time.perf_counter()
        session.push({"a": array})
        ins.append(time.perf_counter() - started)
        started = time.perf_counter()
        session.pull(["a"])
        outs.append(time.perf_counter() - started)
    out["100 MB in (s)"], out["100 MB out (s)"] = statistics.median(ins), statistics.median(outs)
    image = session.image or ""
    idle = []
    try:
        for _ in range(max(0, containers - 1)):
            request = RunRequest(
                image=image,
                command=["python", "-c", "import time; time.sleep(600)"],
                labels=labels(env="bench", role="run", **manager.ownership()),
                mounts=[],
            )
            container = manager.backend.create(request)
            container.start()
            idle.append(container)
        listings = []
        for _ in range(3):
            started = time.perf_counter()
            listed = manager.containers()
            listings.append(time.perf_counter() - started)
        out[f"listing {len(listed)} with usage (ms)"] = statistics.median(listings) * 1000
    finally:
        for container in idle:
            container.remove()
        session.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30, help="warm round trips per target (default 30)")
    parser.add_argument("--containers", type=int, default=20, help="containers in the listing (default 20)")
    args = parser.parse_args(argv)

    from traitlets.config import Config

    from jupyter_containers.backends.docker import DockerBackend
    from jupyter_containers.manager import ContainersManager
    from tests import engines

    folder = Path(tempfile.mkdtemp(prefix="jc-bench-remote-", dir="/var/tmp"))
    folder.chmod(0o755)
    main_backend = DockerBackend(api_timeout=600)
    say("starting the remote engine (Docker-in-Docker)")
    engine = engines.start_second_engine(main_backend.api, folder / "engine")
    managers: dict[str, Any] = {}
    try:
        inspected = engine.main_api.inspect_container(engine.container_id)
        address = inspected["NetworkSettings"]["IPAddress"]
        (folder / "containers.toml").write_text(
            f'[targets.tls]\nengine = "{engine.tls_url}"\n'
            f'tls = {{ ca = "{engine.tls.ca}", cert = "{engine.tls.cert}", key = "{engine.tls.key}" }}\n'
            f'kernel_address = "{address}"\n'
            '[targets.ssh]\nengine = "ssh://second-engine"\n'
            '[environments.bench]\npip = ["numpy"]\n[environments.bench.resources]\nmemory = "1g"\n'
        )
        config = Config()
        config.Builder.image_repository = "jupyter-containers-bench/{env}"
        config.DockerBackend.ssh_command = ["ssh", *engine.ssh_options()]
        base = ContainersManager(spec_path=folder / "containers.toml", config=config)
        managers = {"local": base, "tls": base.for_target("tls"), "ssh": base.for_target("ssh")}
        results: dict[str, dict[str, float]] = {}
        for name, manager in managers.items():
            say(f"{name}: building")
            manager.build("bench")
            say(f"{name}: measuring")
            results[name] = measure(manager, args.runs, args.containers)
        rows = list(results["local"])
        print(f"{'':34} {'local':>9} {'tls':>9} {'ssh':>9}   tls/local  ssh/local")
        for row in rows:
            key = row if row in results["tls"] else None
            values = [results[n].get(row) or next(v for k, v in results[n].items() if k.split()[0] == row.split()[0])
                      for n in ("local", "tls", "ssh")]  # fmt: skip
            print(
                f"{row:34} {values[0]:9.2f} {values[1]:9.2f} {values[2]:9.2f}   "
                f"{values[1] / values[0]:9.2f} {values[2] / values[0]:9.2f}" + ("" if key else "")
            )
    finally:
        for name, manager in managers.items():
            if name != "local":
                manager.workspace_sync().remove()
            from jupyter_containers.errors import ConflictError

            for image in manager.backend.list_images():
                for tag in image.tags:
                    if tag.startswith("jupyter-containers-bench/"):
                        try:
                            manager.backend.remove_image(tag)
                        except ConflictError:
                            pass  # another benchmark's container (benchmarks/cells.py) runs it: theirs to remove
            manager.backend.close()
        engine.close()
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
