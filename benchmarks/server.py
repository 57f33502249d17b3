"""Server benchmark: the REST API of a real ``jupyter server`` with the extension, on the real engine.

Run: ``.venv/bin/python benchmarks/server.py [--containers 100] [--lines 5]``

Figures, each against a baseline:

1. ``GET /jupyter-containers/api/containers`` with N running containers of ours (usage read from cgroup
   files), median of 10 after one warm-up, vs one ``docker stats`` call (``container.stats(stream=False)``,
   median of 3; the table also shows N such calls, computed);
2. build-log latency: a post_build step prints ``T <time.time()>`` lines; for each line received by an SSE
   client of ``GET builds/ID/log`` the latency is receive time - printed time (same host clock), vs the same
   latency in process on the engine's stream (``ContainersManager.build(on_event=...)``, whose events are
   ``DockerBackend.build``'s) for an identical spec with another nonce;
3. ``GET environments`` and ``GET containers`` (with the N containers running) polled by 20 clients at once:
   p95 and median latency vs one client polling alone, just before.

Progress goes to stderr, the table to stdout. The server is stopped by its PID, and every container and
image the run created is removed (by label and repository) even when the run fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import docker  # noqa: E402
from traitlets.config import Config  # noqa: E402

from jupyter_containers.backends.base import labels  # noqa: E402
from jupyter_containers.manager import ContainersManager  # noqa: E402
from tests.server.process import Server  # noqa: E402

ENV = "srvbench"
REPOSITORY_TEMPLATE = "jupyter-containers-bench/{env}"
REPOSITORY = REPOSITORY_TEMPLATE.format(env=ENV)
BASE_IMAGE = "jupyter-containers/base:bookworm"
BENCH_LABEL = "io.jupyter.containers.benchmark"
RUN_ID = f"server-{uuid.uuid4().hex[:8]}"
T_LINE = re.compile(r"\bT (\d+\.\d+)")

SPEC = """
[environments.{env}]
description = "server benchmark: post_build prints timestamps"
env = {{ BENCH_NONCE = "{nonce}" }}
post_build = ['''for i in $(seq {lines}); do
  python -c 'import time; print("T", time.time(), flush=True)'; sleep 0.5
done''']
"""


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def workspace(folder: Path, lines: int) -> Path:
    folder.mkdir(parents=True)
    (folder / "containers.toml").write_text(SPEC.format(env=ENV, nonce=uuid.uuid4().hex, lines=lines))
    return folder


# ---------------------------------------------------------------------- 1. listing containers
def start_containers(client: docker.DockerClient, count: int, workspace: Path) -> list[str]:
    # Labelled as the server's own (this user, its workspace): the server lists only those.
    scope = labels(owner_uid=str(os.getuid()), workspace=str(workspace.resolve()))

    def one(i: int) -> str:
        container = client.containers.run(
            BASE_IMAGE,
            ["sleep", "900"],
            detach=True,
            name=f"jc-bench-{RUN_ID}-{i}",
            labels={**labels(env="bench", role="run"), **scope, BENCH_LABEL: RUN_ID},
            mem_limit="32m",
            network_mode="none",
        )
        return container.id

    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(one, range(count)))


def listing(server: Server, ids: list[str], repeats: int = 10) -> float:
    wanted = set(ids)

    def timed() -> tuple[float, list[dict]]:
        started = time.perf_counter()
        data = server.request("containers")
        return time.perf_counter() - started, data["containers"]

    _, listed = timed()  # warm-up: imports, the spec, the first CPU sample of every container
    times = []
    for _ in range(repeats):
        seconds, listed = timed()
        times.append(seconds)
    ours = [c for c in listed if c["id"] in wanted]
    with_usage = [c for c in ours if c["usage"] and c["usage"].get("memory_used") is not None]
    if len(ours) != len(ids) or len(with_usage) != len(ids):
        raise RuntimeError(f"the API listed {len(ours)} of our {len(ids)} containers, {len(with_usage)} with usage")
    say(
        f"listing: {len(listed)} containers, ours {len(ours)} all with usage; "
        f"times (ms) {[round(t * 1e3) for t in times]}"
    )
    return statistics.median(times)


def under_load(server: Server, path: str, clients: int = 20, rounds: int = 15) -> tuple[float, float, float]:
    """``(median, p95)`` of ``GET path`` latencies with ``clients`` polling at once, and the one-client median
    measured just before (the baseline), in seconds."""

    def poll(count: int) -> list[float]:
        times = []
        for _ in range(count):
            started = time.perf_counter()
            server.request(path)
            times.append(time.perf_counter() - started)
        return times

    poll(2)  # warm-up
    alone = statistics.median(poll(rounds))
    with ThreadPoolExecutor(max_workers=clients) as pool:
        times = [t for batch in pool.map(poll, [rounds] * clients) for t in batch]
    times.sort()
    p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
    say(
        f"{path}: one client {alone * 1e3:.1f} ms; {clients} clients median {statistics.median(times) * 1e3:.1f} ms, "
        f"p95 {p95 * 1e3:.1f} ms"
    )
    return statistics.median(times), p95, alone


def docker_stats(client: docker.DockerClient, container_id: str, repeats: int = 3) -> float:
    container = client.containers.get(container_id)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        container.stats(stream=False)
        times.append(time.perf_counter() - started)
    say(f"docker stats: times (s) {[round(t, 3) for t in times]}")
    return statistics.median(times)


# ---------------------------------------------------------------------- 2. build-log latency
def latencies_via_server(server: Server) -> tuple[list[float], list[float]]:
    """Receive time - printed time of every ``T`` line an SSE client gets; also engine -> tracker part."""
    build = server.request(f"environments/{ENV}/build", {})
    say(f"server build {build['id']} started")
    total, to_tracker = [], []
    with server.open(f"builds/{build['id']}/log", headers={"Accept": "text/event-stream"}, timeout=600) as response:
        event = ""
        while True:
            line = response.readline()
            received = time.time()
            if not line:
                break
            line = line.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[len("event: ") :]
            elif line.startswith("data: ") and event == "build":
                data = json.loads(line[len("data: ") :])
                match = T_LINE.search(data.get("text") or "")
                if data.get("kind") == "log" and match:
                    printed = float(match.group(1))
                    total.append(received - printed)
                    to_tracker.append(data["time"] - printed)
            elif line.startswith("data: ") and event == "end":
                end = json.loads(line[len("data: ") :])
                if end["status"] != "built":
                    raise RuntimeError(f"the server's build failed: {end.get('error')}")
    return total, to_tracker


def latencies_in_process(folder: Path) -> list[float]:
    config = Config()
    config.Builder.image_repository = REPOSITORY_TEMPLATE
    manager = ContainersManager(spec_path=folder / "containers.toml", config=config)
    out: list[float] = []

    def on_event(event) -> None:
        received = time.time()
        match = T_LINE.search(event.text or "")
        if event.kind == "log" and match:
            out.append(received - float(match.group(1)))

    result = manager.build(ENV, on_event=on_event)
    if not result.built:
        raise RuntimeError("the in-process build did not build (its image already existed)")
    return out


# ---------------------------------------------------------------------- cleanup and output
def cleanup(client: docker.DockerClient) -> None:
    for filters in ({"label": f"{BENCH_LABEL}={RUN_ID}"}, {"label": f"io.jupyter.containers.env={ENV}"}):
        for container in client.containers.list(all=True, filters=filters):
            try:
                container.remove(force=True)
            except docker.errors.NotFound:
                pass
    images = client.images.list(name=REPOSITORY)
    for image in images:
        try:
            client.images.remove(image.id, force=True)
        except docker.errors.NotFound:
            pass
    say(f"removed our containers and {len(images)} image(s) of {REPOSITORY}")


def row(figure: str, ours: float, baseline: float, goal: str, met: bool, fmt: str = "{:.0f}") -> str:
    ratio = ours / baseline if baseline else float("nan")
    cells = [figure, fmt.format(ours), fmt.format(baseline), f"{ratio:.2g}", goal, "yes" if met else "**no**"]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--containers", type=int, default=100)
    parser.add_argument("--lines", type=int, default=5, help="timestamp lines the post_build step prints")
    args = parser.parse_args()

    client = docker.from_env()
    tmp = Path(tempfile.mkdtemp(prefix="jc-server-bench-"))
    tmp.chmod(0o755)
    server = None
    rows = []
    ok = False
    try:
        root = workspace(tmp / "root", args.lines)
        baseline_root = workspace(tmp / "baseline", args.lines)
        state = tmp / "state"
        state.mkdir()
        say("starting jupyter server")
        server = Server(root, state, "server", image_repository=REPOSITORY_TEMPLATE)
        say(f"server at {server.url} (PID {server.process.pid}, log {server.log_path})")

        # 2 first: the build is quicker on an engine that is not also running 100 containers.
        total, to_tracker = latencies_via_server(server)
        say(f"via server: {len(total)} lines, latency (ms) {[round(t * 1e3, 1) for t in total]}")
        say(f"  of which engine -> tracker (ms) {[round(t * 1e3, 1) for t in to_tracker]}")
        direct = latencies_in_process(baseline_root)
        say(f"in process: {len(direct)} lines, latency (ms) {[round(t * 1e3, 1) for t in direct]}")
        if not total or not direct:
            raise RuntimeError("no timestamp lines were received: see the server log")

        say(f"starting {args.containers} containers")
        started = time.perf_counter()
        ids = start_containers(client, args.containers, root)
        say(f"started {len(ids)} containers in {time.perf_counter() - started:.1f} s")
        list_s = listing(server, ids)
        stats_s = docker_stats(client, ids[0])
        load = {path: under_load(server, path) for path in ("environments", "containers")}

        rows = [
            row(
                f"1. GET containers, {len(ids)} running, with usage (ms)",
                list_s * 1e3,
                stats_s * 1e3,
                "≤ 150 ms",
                list_s <= 0.150,
            ),
            f"| 1'. {len(ids)} × docker stats, computed (ms) | | {stats_s * 1e3 * len(ids):.0f} | "
            f"{list_s / (stats_s * len(ids)):.2g} | | |",
            row(
                "2. build log line → SSE client, median (ms)",
                statistics.median(total) * 1e3,
                statistics.median(direct) * 1e3,
                "≤ 200 ms",
                statistics.median(total) <= 0.200,
                "{:.1f}",
            ),
            row(
                "2'. build log line → SSE client, max (ms)",
                max(total) * 1e3,
                max(direct) * 1e3,
                "≤ 200 ms",
                max(total) <= 0.200,
                "{:.1f}",
            ),
        ]
        for number, (path, (median, p95, alone)) in enumerate(load.items(), start=3):
            rows.append(
                row(
                    f"{number}. GET {path}, 20 clients polling, p95 (ms; baseline: one client)",
                    p95 * 1e3,
                    alone * 1e3,
                    "≤ 100 ms",
                    p95 <= 0.100,
                    "{:.1f}",
                )
            )
            rows.append(f"| {number}'. the same, median (ms) | {median * 1e3:.1f} | | | | |")
        after = [t - k for t, k in zip(total, to_tracker, strict=True)]
        say(
            f"engine -> tracker median {statistics.median(to_tracker) * 1e3:.1f} ms, "
            f"tracker -> client median {statistics.median(after) * 1e3:.1f} ms"
        )
        ok = True
    finally:
        if server is not None:
            server.stop()
            say("server stopped")
        cleanup(client)
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            say(f"kept {tmp} (the server log is in state/)")

    print("| figure | ours | baseline | ratio | goal | met |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
