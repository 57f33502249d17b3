"""Swarm benchmark: submit → first output on a three-node swarm, against a bare ``docker service create``.

Run: ``.venv/bin/python benchmarks/swarm.py [--runs 5] [--jobs 20]``

The swarm is the test suite's (tests/engines.py ``start_swarm``): three Docker-in-Docker engines, one manager
and two workers with two fake GPUs each, plus Debian's docker-registry with TLS and htpasswd auth that every
node pulls from (tests/registry.py). An environment is built on the manager and pulled once on every node
first, so no figure includes a pull. The target has a ``nodes`` table, so ``/workspace`` is synced to each node's
volume (docs/scale-out.md): the project folder is unchanged between the tasks, so the first task on each node
(not timed) syncs it and the timed ones find it current. Measured in one run (medians of ``--runs``):

1. **bare**: ``docker service create`` (the docker SDK, ``replicated-job``, restart ``none``) of the same image,
   ``python3 -c "print('first')"`` on a worker, until that line arrives through ``docker service logs -f``;
   the service then removed. The baseline.
2. **job**: ``manager.run`` of the same command on the swarm target (limits, reservations, our labels, the
   placement check, the entrypoint shim) until its first output reaches the callback. Goal ≤ 1.3 × bare.
3. **kernel**: ``manager.session`` (a kernel as a service, its connection file in a Swarm secret of the
   service, CurveZMQ channels on the node's published ports) until a first cell's output arrives here.
   Against row 1 it does a kernel's work on top: the ratio says what that costs. A second bare service that
   imports what an ipykernel start imports (``ipykernel.kernelapp``, ``zmq``) before its line is the kernel's
   floor. The like-for-like baseline is row 5, a **bare kernel service**: the same kernel started by hand
   (connection file in a secret, ipykernel, ports published in host mode, a jupyter_client connected to the
   node's ports, the first cell's output); goal ≤ 1.3 × that.
4. **spread**: ``--jobs`` small jobs (0.25 CPU, 64 MiB, 2 s each) submitted at once from threads; goal: all
   complete, each node used.

Progress goes to stderr, the table to stdout. Everything it created (swarm, registry, folders) is removed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SPEC = """
[targets.sw]
kind = "swarm"
engine = "{engine}"
tls = {{ ca = "{ca}", cert = "{cert}", key = "{key}" }}
registry = "{registry}/bench"

[targets.sw.nodes]
{nodes}

[environments.bench]
pip = []
"""


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


#: The bare service's program for the kernel's floor: what an ipykernel start imports, then the line.
IMPORT_KERNEL = "import ipykernel.kernelapp, zmq; print('first')"


def bare_first_output(api: Any, image: str, constraint: str, program: str = "print('first')") -> float:
    """``docker service create`` → the first line in ``docker service logs -f``; the service is removed."""
    import docker

    started = time.perf_counter()
    task = docker.types.TaskTemplate(
        container_spec=docker.types.ContainerSpec(image, ["python3", "-c", program]),
        restart_policy=docker.types.RestartPolicy(condition="none"),
        placement=docker.types.Placement(constraints=[constraint]),
    )
    service = api.create_service(task, mode=docker.types.ServiceMode("replicated-job"))["ID"]
    try:
        for chunk in api.service_logs(service, follow=True, stdout=True, stderr=True, is_tty=False):
            if b"first" in chunk:
                return time.perf_counter() - started
        raise RuntimeError("the bare service ended without its output")
    finally:
        api.remove_service(service)


#: The bare kernel's own command: its connection file from the secret to a writable place (ipykernel writes
#: it back), then ipykernel, as someone would run a kernel with ``docker service create`` by hand.
BARE_KERNEL = "cp /run/secrets/kernel.json /tmp/kernel.json && exec python3 -m ipykernel_launcher -f /tmp/kernel.json"
#: The container ports of the bare kernel's five channels (published in host mode on ports the node picks).
BARE_KERNEL_PORTS = {
    "shell_port": 50001,
    "iopub_port": 50002,
    "stdin_port": 50003,
    "control_port": 50004,
    "hb_port": 50005,
}


def bare_kernel_first_output(api: Any, image: str, constraint: str, address: str) -> float:
    """A kernel started by hand: its connection file as a Swarm secret, ``docker service create`` of
    ipykernel with the five ports published in host mode, the node's ports read from the task once it runs,
    a jupyter_client connected to them (``wait_for_ready``: kernel_info until iopub is subscribed), and the
    first cell's output. Plain ZMQ with the HMAC key (no CURVE, which ours adds), no limits, no labels: the
    kernel's work alone, the like-for-like baseline of row 3. ``address``: the node's (looked up beforehand)."""
    import json
    import secrets as random

    import docker
    from jupyter_client.blocking import BlockingKernelClient

    key = random.token_hex(16)
    info = {**BARE_KERNEL_PORTS, "ip": "0.0.0.0", "transport": "tcp", "key": key, "signature_scheme": "hmac-sha256"}
    started = time.perf_counter()
    name = f"jc-bench-kernel-{random.token_hex(4)}"
    secret = api.create_secret(name, json.dumps(info).encode())["ID"]
    service = None
    client = None
    try:
        task = docker.types.TaskTemplate(
            container_spec=docker.types.ContainerSpec(
                image,
                ["sh", "-c", BARE_KERNEL],
                secrets=[docker.types.SecretReference(secret, name, filename="kernel.json")],
            ),
            restart_policy=docker.types.RestartPolicy(condition="none"),
            placement=docker.types.Placement(constraints=[constraint]),
        )
        ports = [{"Protocol": "tcp", "TargetPort": p, "PublishMode": "host"} for p in BARE_KERNEL_PORTS.values()]
        service = api.create_service(
            task, mode=docker.types.ServiceMode("replicated-job"), endpoint_spec={"Ports": ports}
        )["ID"]
        published: dict[int, int] = {}
        while len(published) < len(ports):
            for t in api.tasks(filters={"service": service}):
                for port in ((t.get("Status") or {}).get("PortStatus") or {}).get("Ports") or []:
                    if port.get("PublishedPort"):
                        published[int(port["TargetPort"])] = int(port["PublishedPort"])
            if len(published) < len(ports):
                time.sleep(0.05)
        client = BlockingKernelClient()
        client.load_connection_info(
            {**info, "ip": address, **{name: published[port] for name, port in BARE_KERNEL_PORTS.items()}}
        )
        client.start_channels()
        client.wait_for_ready(timeout=120)
        msg_id = client.execute("print('first')")
        while True:
            msg = client.get_iopub_msg(timeout=60)
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
                if "first" in msg["content"]["text"]:
                    return time.perf_counter() - started
    finally:
        if client is not None:
            client.stop_channels()
        if service is not None:
            api.remove_service(service)
        api.remove_secret(secret)


def job_first_output(manager: Any, constraint: str) -> float:
    from jupyter_containers.spec.model import Resources

    first: list[float] = []
    started = time.perf_counter()

    def out(data: bytes) -> None:
        if not first and b"first" in data:
            first.append(time.perf_counter() - started)

    manager.run(
        "bench", ["python3", "-c", "print('first')"], resources=Resources(constraints=(constraint,)), stdout=out
    )
    if not first:
        raise RuntimeError("the job gave no output")
    return first[0]


def kernel_first_output(manager: Any, constraint: str) -> float:
    from jupyter_containers.spec.model import Resources

    started = time.perf_counter()
    session = manager.session("bench", Resources(constraints=(constraint,)))
    try:
        out: list[str] = []
        session.execute("print('first')", stdout=out.append)
        took = time.perf_counter() - started
        if "first" not in "".join(out):
            raise RuntimeError("the kernel gave no output")
        return took
    finally:
        session.stop()


def spread(manager: Any, jobs: int) -> tuple[int, Counter]:
    from jupyter_containers.spec.model import Resources

    def one(_: int) -> str | None:
        out: list[bytes] = []
        try:
            _, _, result = manager.run(
                "bench",
                ["sh", "-c", "sleep 2; echo node=$JUPYTER_CONTAINERS_NODE"],
                resources=Resources(cpus=0.25, memory=64 << 20),
                stdout=out.append,
            )
        except Exception as exc:  # noqa: BLE001 - counted as not completed, and said
            say(f"  a job failed: {exc}")
            return None
        text = b"".join(out).decode()
        return text.split("node=")[1].split()[0] if result.exit_code == 0 and "node=" in text else None

    with ThreadPoolExecutor(jobs) as pool:
        nodes = list(pool.map(one, range(jobs)))
    return sum(1 for n in nodes if n), Counter(n for n in nodes if n)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="samples per measurement (median)")
    parser.add_argument("--jobs", type=int, default=20, help="concurrent small jobs spread over the nodes")
    args = parser.parse_args(argv)

    from traitlets.config import Config

    from jupyter_containers.backends.docker import DockerBackend
    from jupyter_containers.manager import ContainersManager
    from tests import engines, registry

    main_api = DockerBackend(api_timeout=600).api
    folder = Path(tempfile.mkdtemp(prefix="jc-bench-swarm-", dir="/var/tmp"))
    saved = os.environ.get("DOCKER_CONFIG")
    reg = swarm = manager = None
    try:
        say("starting a TLS registry and a three-node swarm ...")
        reg = registry.start_tls_registry(folder / "registry", registry.bridge_gateway(main_api))
        assert reg.ca is not None
        swarm = engines.start_swarm(main_api, folder / "swarm", trust=[(reg.address, reg.ca.read_text())])
        os.environ["DOCKER_CONFIG"] = str(reg.docker_config(folder / "docker"))
        tls = swarm.manager.tls
        # The project (the synced /workspace: the target has a nodes table) apart from the swarm's and the
        # registry's folders, whose logs change all the time: a workspace that changes is synced before every task.
        project = folder / "project"
        project.mkdir()
        (project / "data.csv").write_text("x\n1\n")
        (project / "containers.toml").write_text(
            SPEC.format(
                engine=swarm.manager.tls_url,
                ca=tls.ca,
                cert=tls.cert,
                key=tls.key,
                registry=reg.address,
                nodes="\n".join(f'{n.hostname} = "{n.tls_url}"' for n in swarm.nodes),
            )
        )
        config = Config()
        config.Builder.image_repository = "jupyter-containers-bench/{env}"
        manager = ContainersManager(spec_path=project / "containers.toml", config=config, target="sw")
        say("building and pushing the environment, pulling it on every node ...")
        built = manager.build("bench")
        image = manager.backend.distribute(built.image)
        for node in swarm.nodes:
            job_first_output(manager, f"node.hostname=={node.hostname}")
        api = manager.backend.api
        rows: dict[str, list[float]] = {
            "bare service create": [],
            "bare, imports ipykernel": [],
            "job (manager.run)": [],
            "kernel (session)": [],
            "bare kernel service": [],
        }
        addresses = {w.hostname: w.address() for w in swarm.workers}
        for i in range(args.runs):
            worker = swarm.workers[i % len(swarm.workers)]
            constraint = f"node.hostname=={worker.hostname}"
            rows["bare service create"].append(bare_first_output(api, image, constraint))
            rows["bare, imports ipykernel"].append(bare_first_output(api, image, constraint, IMPORT_KERNEL))
            rows["job (manager.run)"].append(job_first_output(manager, constraint))
            rows["kernel (session)"].append(kernel_first_output(manager, constraint))
            rows["bare kernel service"].append(
                bare_kernel_first_output(api, image, constraint, addresses[worker.hostname])
            )
            say(f"  run {i + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in rows.items()))
        say(f"{args.jobs} concurrent jobs ...")
        started = time.perf_counter()
        completed, per_node = spread(manager, args.jobs)
        spread_seconds = time.perf_counter() - started
    finally:
        if manager is not None:
            from jupyter_containers.kernel.pool import get_pool

            get_pool().stop_all()
            manager.backend.close()
        if swarm is not None:
            swarm.close()
        if reg is not None:
            reg.close()
        if saved is None:
            os.environ.pop("DOCKER_CONFIG", None)
        else:
            os.environ["DOCKER_CONFIG"] = saved
        shutil.rmtree(folder, ignore_errors=True)

    base = statistics.median(rows["bare service create"])
    print(f"{'submit → first output':<24} {'median':>8} {'min':>7} {'max':>7} {'× bare':>7}")
    for name, values in rows.items():
        median = statistics.median(values)
        print(f"{name:<24} {median:>7.2f}s {min(values):>6.2f}s {max(values):>6.2f}s {median / base:>6.2f}×")
    floor = statistics.median(rows["bare, imports ipykernel"])
    kernel = statistics.median(rows["kernel (session)"])
    print(f"kernel against a bare service that imports ipykernel (its floor): {kernel / floor:.2f}×")
    bare_kernel = statistics.median(rows["bare kernel service"])
    print(f"kernel against a bare kernel service (like for like, goal ≤ 1.3×): {kernel / bare_kernel:.2f}×")
    nodes = ", ".join(f"{k}: {v}" for k, v in sorted(per_node.items()))
    print(f"{args.jobs} concurrent jobs: {completed} completed in {spread_seconds:.1f} s; per node: {nodes}")
    all_used = len(per_node) == len(swarm.nodes) if swarm is not None else False
    return 0 if completed == args.jobs and all_used else 1


if __name__ == "__main__":
    raise SystemExit(main())
