"""Runs, notebook jobs, kernels and ``%%container`` sessions on a real three-node Docker Swarm.

All real: the session's ``swarm`` (three Docker-in-Docker engines, one manager and two workers, each advertising
two fake GPUs as ``NVIDIA-GPU`` generic resources) and its TLS registry with htpasswd auth (every node pulls from
it; the credentials go with each service). Only the GPUs are fake: nothing here has one, so the test checks
what Swarm assigned (``CUDA_VISIBLE_DEVICES``), not a CUDA device.

The workspace lives under /var/tmp (the engines mount the host's /tmp): no folder of this machine reaches a task.
The target has a nodes table and no shared ``workspace`` folder, so /workspace is a volume on each node, synced
through that node's engine once Swarm placed the task (docs/scale-out.md): everything reaches a task through the
images, the engines' APIs and its channels.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest

from ..kernels import interrupted_sleep, provisioner_kernel
from ..notebooks import stdout_of, write_notebook

pytestmark = pytest.mark.engine

SPEC = """
[targets.sw]
kind = "swarm"
engine = "{engine}"
tls = {{ ca = "{ca}", cert = "{cert}", key = "{key}" }}
registry = "{registry}/swarm-test"
constraints = ["node.role==worker"]

[targets.sw.nodes]
{nodes}

[environments.sw]
description = "the swarm test environment"
pip = []

[environments.sw.resources]
cpus = 0.5
memory = "256m"
"""


@pytest.fixture(scope="module")
def project(swarm, tls_registry):
    root = Path(tempfile.mkdtemp(prefix="jc-swarm-", dir="/var/tmp"))
    root.chmod(0o755)
    tls = swarm.manager.tls
    nodes = "\n".join(f'{node.hostname} = "{node.tls_url}"' for node in swarm.nodes)
    (root / "containers.toml").write_text(
        SPEC.format(
            engine=swarm.manager.tls_url,
            ca=tls.ca,
            cert=tls.cert,
            key=tls.key,
            registry=tls_registry.address,
            nodes=nodes,
        )
    )
    (root / "jupyter_containers_config.py").write_text(
        "c.Builder.image_repository = 'jupyter-containers-test/{env}'\nc.SwarmBackend.placement_timeout = 4.0\n"
    )
    # The registry's credentials, for the push and for the nodes' pulls (sent along with each service); outside
    # the workspace, which is synced to the nodes.
    saved = os.environ.get("DOCKER_CONFIG")
    credentials = Path(tempfile.mkdtemp(prefix="jc-swarm-docker-"))
    os.environ["DOCKER_CONFIG"] = str(tls_registry.docker_config(credentials / ".docker"))
    yield root
    if saved is None:
        os.environ.pop("DOCKER_CONFIG", None)
    else:
        os.environ["DOCKER_CONFIG"] = saved
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(credentials, ignore_errors=True)


@pytest.fixture(scope="module")
def manager(project, engine_config):
    from jupyter_containers.config import discover_config
    from jupyter_containers.manager import ContainersManager

    config = discover_config(project, base=engine_config)
    made = ContainersManager(spec_path=project / "containers.toml", config=config, target="sw")
    built = made.build("sw")
    pulls = _pull_on_workers(made, built.image)
    yield made
    for pull in pulls:
        pull.join(120)
    from jupyter_containers.kernel.pool import get_pool

    get_pool().stop_all()
    for service in made.backend.api.services(filters={"label": "io.jupyter.containers.managed"}):
        made.backend.api.remove_service(service["ID"])
    leftover = made.backend.api.secrets(filters={"label": "io.jupyter.containers.managed"})
    for secret in leftover:
        made.backend.api.remove_secret(secret["ID"])
    made.backend.close()


def _pull_on_workers(manager, image: str) -> list[threading.Thread]:
    """Every worker pulls the pushed environment at once, in the background while the first tests run: the
    pulls are the module's longest wait, and one after the other (each test's first task on a worker) they
    add up. A task started while its node still pulls waits for that same pull (the engine joins it)."""
    reference = manager.backend.distribute(image)
    engines = [manager.backend.node_backend(name) for name in ("worker1", "worker2")]

    def pull(engine) -> None:
        try:
            engine.api.pull(reference)
        except Exception:  # noqa: BLE001 - only a head start: a test's task pulls it again if this failed
            pass

    threads = [threading.Thread(target=pull, args=(engine,), daemon=True) for engine in engines]
    for thread in threads:
        thread.start()
    return threads


def _services(manager) -> list[dict]:
    return manager.backend.api.services(filters={"label": "io.jupyter.containers.managed"})


def test_nodes_are_listed_with_their_gpus(manager, swarm):
    nodes = {n.name: n for n in manager.backend.nodes()}
    assert sorted(nodes) == ["manager", "worker1", "worker2"]
    assert all(n.gpus == 2 and n.state == "ready" and n.cpus > 0 and n.memory > 0 for n in nodes.values())
    assert nodes["worker1"].address == swarm.workers[0].address()
    # and the registry every node pulls from answers the manager's engine (what `setup --target` checks)
    assert manager.backend.registry_check().endswith("answers")


def test_a_run_is_placed_on_a_worker_with_its_gpus_and_limits(manager):
    from jupyter_containers.spec.model import Resources

    out: list[bytes] = []
    # when a command asks for 2 of a node's GPUs, half a CPU and 256 MiB
    _, effective, result = manager.run(
        "sw",
        [
            "sh",
            "-c",
            "echo node=$JUPYTER_CONTAINERS_NODE gpus=$CUDA_VISIBLE_DEVICES uid=$(id -u); "
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us",
        ],
        resources=Resources(gpus=2),
        stdout=out.append,
    )
    text = b"".join(out).decode()
    # then it ran on a worker (the target's constraint), as a non-root user, with the two GPUs Swarm assigned
    assert result.exit_code == 0, text
    assert "node=worker" in text and "uid=1000" in text
    gpus = text.split("gpus=")[1].split()[0].split(",")
    assert sorted(gpus) == ["gpu0", "gpu1"]
    # and the limits are in its cgroup
    assert "268435456" in text and "50000" in text
    # and the service is gone
    assert _services(manager) == []


def test_a_notebook_job_runs_on_a_worker_and_its_output_comes_back(manager, project):
    from jupyter_containers.jobs.runner import ExecuteRequest
    from jupyter_containers.spec.model import Resources

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("n = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "import os; print(os.environ['JUPYTER_CONTAINERS_NODE'], os.environ['CUDA_VISIBLE_DEVICES'], n * 7)"
        ),
    ]
    source = project / "job.ipynb"
    nbformat.write(nb, source)
    output = project / "job.out.ipynb"
    result = manager.execute(
        ExecuteRequest(
            notebook=source,
            environment="sw",
            output_path=output,
            parameters={"n": 6},
            resources=Resources(gpus=1, constraints=("node.hostname==worker2",)),
        ),
        log=lambda _: None,
    )
    assert result.status == "completed", result
    printed = json.dumps(nbformat.read(output, as_version=4).cells[-1].outputs)
    assert "worker2 gpu" in printed and "42" in printed
    assert _services(manager) == []


def test_a_session_on_a_worker_takes_variables_in_and_out(manager, project, capsys):
    """``%%container --in/--out``: the values travel through the worker's engine (its node's entry in the target's
    nodes table), the cells over the kernel's CurveZMQ channels on that node's published ports."""
    from IPython.core.interactiveshell import InteractiveShell

    from jupyter_containers.kernel.pool import get_pool

    before = os.getcwd()
    os.chdir(project)
    try:
        ip = InteractiveShell.instance()
        ip.run_line_magic("load_ext", "jupyter_containers")
        ip.user_ns["numbers"] = list(range(5))
        result = ip.run_cell(
            "%%container sw --target sw --constraint node.hostname==worker1 --in numbers --out total\n"
            "import os\ntotal = sum(numbers)\nprint(os.environ['JUPYTER_CONTAINERS_NODE'], total)"
        )
        assert result.error_in_exec is None, result.error_in_exec
        assert "worker1 10" in capsys.readouterr().out
        assert ip.user_ns["total"] == 10
        session = next(s for s in get_pool().list() if s.manager.target == "sw")
        info = session.km.get_connection_info()
        assert info["transport"] == "tcp" and info["curve_publickey"] and info["key"]
        # and the session is a service of ours, placed on worker1
        listed = {c.id: c for c in session.manager.backend.list_containers()}
        assert listed[session.container_id].node == "worker1"
        session.stop()
        assert session.container_id not in {s["ID"] for s in _services(manager)}
        # and the secret that carried its connection file is gone with it
        assert manager.backend.api.secrets(filters={"label": "io.jupyter.containers.managed"}) == []
    finally:
        os.chdir(before)


def test_a_provisioner_kernel_runs_on_a_worker(manager, project):
    with provisioner_kernel(project, "sw", manager.config, target="sw") as (km, kc):
        reply = kc.execute_interactive("import os; print(os.environ['JUPYTER_CONTAINERS_NODE'])", timeout=60)
        assert reply["content"]["status"] == "ok"
        service = km.provisioner.kernel.container_id
        assert service in {s["ID"] for s in _services(manager)}
        # the connection file went in a Swarm secret of the service: its keys are not in the service's spec
        inspected = manager.backend.api.inspect_service(service)
        (held,) = inspected["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"]
        assert km.get_connection_info()["key"].decode() not in json.dumps(inspected)
        # and an interrupt goes through the worker's engine
        assert interrupted_sleep(km, kc)["content"]["ename"] == "KeyboardInterrupt"
    assert service not in {s["ID"] for s in _services(manager)}
    # and its secret went with it
    assert held["SecretID"] not in {s["ID"] for s in manager.backend.api.secrets()}


def test_a_run_reads_the_workspace_on_its_node_and_what_it_writes_comes_back(manager, project):
    """/workspace on the swarm: the node's volume gets the workspace once Swarm placed the task (before its command
    starts), what the command writes comes back here, and a file deleted here is deleted there."""
    from jupyter_containers.spec.model import Resources

    # given a file in the workspace
    (project / "data").mkdir(exist_ok=True)
    (project / "data" / "in.txt").write_text("from this machine\n")
    on_worker1 = Resources(constraints=("node.hostname==worker1",))
    out: list[bytes] = []
    # when a command on worker1 reads it and writes another
    _, _, result = manager.run(
        "sw",
        ["sh", "-c", 'cat data/in.txt; echo "made on $JUPYTER_CONTAINERS_NODE" > data/out.txt'],
        resources=on_worker1,
        stdout=out.append,
    )
    # then it read the workspace's file, and its own file is here
    assert result.exit_code == 0 and b"".join(out) == b"from this machine\n", out
    assert (project / "data" / "out.txt").read_text() == "made on worker1\n"
    # and the volume is worker1's, labelled ours (what prune filters on)
    volume = manager.workspace_sync().volume
    worker1 = manager.backend.node_backend("worker1")
    assert volume in worker1.list_volumes({"io.jupyter.containers.role": "workspace"})
    # when the file is deleted here, then the next command on that node no longer sees it
    (project / "data" / "in.txt").unlink()
    out.clear()
    _, _, result = manager.run("sw", ["ls", "data"], resources=on_worker1, stdout=out.append)
    assert result.exit_code == 0 and b"".join(out).split() == [b"out.txt"], out
    # and a command on the other worker gets the workspace in that node's own volume
    out.clear()
    on_worker2 = Resources(constraints=("node.hostname==worker2",))
    _, _, result = manager.run("sw", ["cat", "data/out.txt"], resources=on_worker2, stdout=out.append)
    assert result.exit_code == 0 and b"".join(out) == b"made on worker1\n", out
    # when prune removes the nodes' unused workspace volumes (this machine's records of them go too): the task
    # containers that had them went with their services (Swarm itself leaves them on the node)
    _wait_volume_unused(manager, "worker1", volume)
    _wait_volume_unused(manager, "worker2", volume)
    pruned = manager._prune_workspace_volumes(dry_run=False)
    assert f"worker1:{volume}" in pruned and f"worker2:{volume}" in pruned
    assert volume not in worker1.list_volumes({"io.jupyter.containers.role": "workspace"})
    # then the next command on worker1 gets the whole workspace again in the volume its task creates
    out.clear()
    _, _, result = manager.run("sw", ["cat", "data/out.txt"], resources=on_worker1, stdout=out.append)
    assert result.exit_code == 0 and b"".join(out) == b"made on worker1\n", out
    assert _services(manager) == []


def test_a_volume_removed_behind_our_back_is_filled_again(manager, project):
    """The record here says worker1's volume holds the workspace, but someone removed the volume on the node
    (``docker volume rm``): the volume the next task creates is new (made by that very service), so it gets
    everything again rather than only what changed since the record."""
    from jupyter_containers.spec.model import Resources

    (project / "kept.txt").write_text("kept")
    on_worker1 = Resources(constraints=("node.hostname==worker1",))
    manager.run("sw", ["true"], resources=on_worker1)
    volume = manager.workspace_sync().volume
    # given the volume removed on the node, this machine's record of it left as it was
    _wait_volume_unused(manager, "worker1", volume)
    manager.backend.node_backend("worker1").remove_volume(volume)
    out: list[bytes] = []
    # when the next command on that node reads the file
    _, _, result = manager.run("sw", ["cat", "kept.txt"], resources=on_worker1, stdout=out.append)
    # then it is there
    assert result.exit_code == 0 and b"".join(out) == b"kept", out


def test_a_task_starts_without_waiting_when_every_node_holds_the_workspace(manager, project):
    """Once the volume of every node the task may land on holds the workspace as it is here, a task does not
    wait to be synced (no ``JC_WAIT_FOR`` in its service) and still reads the files; a changed file, or a
    node's volume removed by hand, brings the wait back (and the task then gets the file)."""
    from jupyter_containers.backends.base import RunRequest, labels
    from jupyter_containers.spec.model import Resources

    def waits(*, read: str, expect: bytes, node: str = "worker1") -> bool:
        out: list[bytes] = []
        image = manager.build("sw").image
        container = manager.backend.create(
            RunRequest(
                image=image,
                command=["cat", read],
                resources=Resources(constraints=(f"node.hostname=={node}",)),
                mounts=manager.mounts(),
                labels=labels(env="sw", role="run", **manager.ownership()),
                working_dir="/workspace",
            )
        )
        try:
            container.start()
            env = manager.backend.api.inspect_service(container.id)["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"]
            assert container.wait(120) == 0, container.logs()
            out.append(container.logs().encode())
        finally:
            container.remove()
        assert expect in b"".join(out), out
        return any(e.startswith("JC_WAIT_FOR=") for e in env or ())

    # given every node synced with the workspace as it is
    (project / "steady.txt").write_text("one")
    for node in ("worker1", "worker2"):  # (the target's tasks run on workers only)
        manager.run("sw", ["true"], resources=Resources(constraints=(f"node.hostname=={node}",)))
    # when a task starts on an unchanged workspace, then it does not wait, and reads the file
    assert not waits(read="steady.txt", expect=b"one")
    # and neither does a run (its task's environment, as its PID 1 has it, names no marker to wait for)
    out: list[bytes] = []
    probe = "cat steady.txt; echo; tr '\\0' '\\n' < /proc/1/environ | grep -c '^JC_WAIT_FOR=' || true"
    on_worker1 = Resources(constraints=("node.hostname==worker1",))
    _, _, result = manager.run("sw", ["sh", "-c", probe], resources=on_worker1, stdout=out.append)
    assert result.exit_code == 0 and b"".join(out).split() == [b"one", b"0"], out
    # when a file changed here, then the next run waits for its node's sync and reads the new contents
    (project / "steady.txt").write_text("two")
    out.clear()
    _, _, result = manager.run("sw", ["sh", "-c", probe], resources=on_worker1, stdout=out.append)
    assert result.exit_code == 0 and b"".join(out).split() == [b"two", b"1"], out
    # and so does a task after another change
    (project / "steady.txt").write_text("two")  # the same text, a new mtime: a change by size and mtime
    assert waits(read="steady.txt", expect=b"two")
    # when a node's volume is removed by hand (this machine's record of it left as it was), the wait is back
    for node in ("worker1", "worker2"):  # (the target's tasks run on workers only)
        manager.run("sw", ["true"], resources=Resources(constraints=(f"node.hostname=={node}",)))
    assert not waits(read="steady.txt", expect=b"two")
    volume = manager.workspace_sync().volume
    _wait_volume_unused(manager, "worker2", volume)
    manager.backend.node_backend("worker2").remove_volume(volume)
    assert waits(read="steady.txt", expect=b"two", node="worker2")
    assert _services(manager) == []


def _wait_volume_unused(manager, node: str, volume: str, timeout: float = 30) -> None:
    """Until no container on ``node`` has ``volume`` (the backend removes a synced task's container with its
    service; the engine may take a moment to let go of the volume)."""
    engine = manager.backend.node_backend(node)
    deadline = time.monotonic() + timeout
    while volume not in engine.list_volumes({"io.jupyter.containers.role": "workspace"}, unused=True):
        if time.monotonic() > deadline:
            held = [
                (c["Id"][:12], c["State"], c["Status"], c["Labels"].get("io.jupyter.containers.role"), c["Names"])
                for c in engine.api.containers(all=True, filters={"volume": volume})
            ]
            raise AssertionError(f"containers on {node} still have the volume {volume} after {timeout:.0f} s: {held}")
        time.sleep(0.5)


def test_a_kernels_workspace_writes_come_back_while_it_runs_and_when_it_stops(manager, project):
    """A kernel through Jupyter's provisioner on a worker: it reads the workspace's file from its node's volume, a
    file it writes comes back while it still runs (live sync through its own container on that node), and one
    written just before the shutdown comes back when it stops."""
    # given a file in the workspace
    (project / "kernel-in.txt").write_text("for the kernel")
    for name in ("kernel-live.txt", "kernel-last.txt"):
        (project / name).unlink(missing_ok=True)
    with provisioner_kernel(project, "sw", manager.config, target="sw") as (km, kc):
        # when the kernel reads it and writes a file
        reply = kc.execute_interactive(
            "assert open('/workspace/kernel-in.txt').read() == 'for the kernel'\n"
            "open('kernel-live.txt', 'w').write('live')",
            timeout=60,
        )
        assert reply["content"]["status"] == "ok", reply["content"]
        # then the written file is here while the kernel still runs
        deadline = time.monotonic() + 60
        while not (project / "kernel-live.txt").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (project / "kernel-live.txt").read_text() == "live"
        assert km.provisioner.kernel.container_id in {s["ID"] for s in _services(manager)}
        # when it writes one more just before it is shut down
        reply = kc.execute_interactive("open('kernel-last.txt', 'w').write('last')", timeout=60)
        assert reply["content"]["status"] == "ok", reply["content"]
    # then that one came back at the stop
    assert (project / "kernel-last.txt").read_text() == "last"
    assert _services(manager) == []


def test_the_engine_has_no_service_without_a_network(manager):
    """Why ``network = false`` is refused on a swarm (the next test): the manager's engine (20.10, API 1.41) refuses
    the local ``none`` network for a service, by name and by id, and the task of a service without networks has the
    node's bridge network. If an engine ever takes ``none`` for services, this fails: use it then."""
    from jupyter_containers.spec.model import Resources

    api = manager.backend.api
    image = manager.backend.distribute(manager.build("sw").image)
    (none,) = api.networks(names=["none"])
    task = {"ContainerSpec": {"Image": image, "Args": ["true"]}, "RestartPolicy": {"Condition": "none"}}
    for target in ("none", none["Id"]):
        # when a service asks for the none network
        try:
            created = api.create_service({**task, "Networks": [{"Target": target}]}, name=f"jc-test-none-{target[:6]}")
        except Exception as exc:  # noqa: BLE001 - docker's APIError: what the engine said is what is checked
            said = str(exc)
        else:
            api.remove_service(created["ID"])
            said = "accepted"
        # then the engine refuses it
        assert "could not find the corresponding predefined swarm network" in said, said
    # and a task without networks (the network on: no Networks field) has more than a loopback interface
    out: list[bytes] = []
    _, _, result = manager.run("sw", ["ls", "/sys/class/net"], resources=Resources(), stdout=out.append)
    assert result.exit_code == 0 and "eth0" in b"".join(out).decode().split()
    assert _services(manager) == []


def test_runs_jobs_and_kernels_without_a_network_are_refused_naming_the_target(manager, project):
    """``network = false`` (``--network none``) on the swarm target: a run, a ``%%container`` session, a provisioner
    kernel and a notebook job are each refused before anything is created on the swarm, saying so; nothing runs
    with the network it asked not to have."""
    from jupyter_containers.errors import RequestError
    from jupyter_containers.jobs.runner import ExecuteRequest
    from jupyter_containers.spec.model import Resources

    said = "resources.network = false (--network none) cannot run on target 'sw'"
    # when a command asks for no network, then it is refused
    with pytest.raises(RequestError, match=said.replace("(", r"\(").replace(")", r"\)")):
        manager.run("sw", ["ls", "/sys/class/net"], resources=Resources(network=False))
    # and so is a %%container session
    with pytest.raises(RequestError, match="cannot run on target 'sw'"):
        manager.session("sw", Resources(network=False))
    # and a kernel started by Jupyter (the kernelspec's network option)
    with pytest.raises(RequestError, match="cannot run on target 'sw'"):
        with provisioner_kernel(project, "sw", manager.config, target="sw", options={"network": "none"}):
            pass
    # and a notebook job
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print(1)")]
    nbformat.write(nb, project / "offline.ipynb")
    result = manager.execute(
        ExecuteRequest(
            notebook=project / "offline.ipynb",
            environment="sw",
            output_path=project / "offline.out.ipynb",
            resources=Resources(network=False),
        ),
        log=lambda _: None,
    )
    assert result.status == "failed" and "cannot run on target 'sw'" in json.dumps(result.error), result
    # and nothing was left on the swarm
    assert _services(manager) == []
    assert manager.backend.api.secrets(filters={"label": "io.jupyter.containers.managed"}) == []


@pytest.mark.parametrize(
    ("resources", "missing"),
    [({"gpus": 3}, "no node has 3 GPUs (most: 2)"), ({"memory": "500g"}, "no node has 500 GiB of memory")],
)
def test_a_request_no_node_can_hold_fails_saying_what_the_nodes_have(manager, resources, missing):
    from jupyter_containers.errors import EngineRefusedError
    from jupyter_containers.spec.parse import parse_resources

    with pytest.raises(EngineRefusedError) as caught:
        manager.run("sw", ["true"], resources=parse_resources(resources))
    message = str(caught.value)
    assert missing in message
    assert "worker1 (ready: " in message and "2 GPUs" in message
    assert _services(manager) == []


def test_a_task_that_stays_pending_is_removed_after_the_placement_timeout(manager):
    """Capacity exists but is held: worker1's two GPUs by a session, a run asking for one more there waits
    (Swarm would keep it pending forever) and fails after c.SwarmBackend.placement_timeout (4 s here)."""
    from jupyter_containers.errors import EngineRefusedError
    from jupyter_containers.spec.model import Resources

    holder = manager.session("sw", Resources(gpus=2, constraints=("node.hostname==worker1",)))
    try:
        with pytest.raises(EngineRefusedError) as caught:
            manager.run("sw", ["true"], resources=Resources(gpus=1, constraints=("node.hostname==worker1",)))
        assert "no node of the swarm took the task within 4s" in str(caught.value)
        assert "other tasks hold it" in str(caught.value)
    finally:
        holder.stop()
    assert _services(manager) == []


def test_stopping_a_job_removes_its_service(manager):
    from jupyter_containers.spec.model import Resources

    results: list = []
    worker = threading.Thread(
        target=lambda: results.append(_quietly(manager.run, "sw", ["sleep", "120"], resources=Resources())),
        daemon=True,
    )
    worker.start()
    deadline = time.monotonic() + 60
    while not _running(manager) and time.monotonic() < deadline:
        time.sleep(0.2)
    (running,) = _running(manager)
    # when it is stopped as the sidebar or 'jupyter-containers stop' does
    manager.stop_container(running.id)
    worker.join(30)
    # then the run ended and its service is gone
    assert not worker.is_alive() and results
    assert _services(manager) == []


def test_a_sweep_spreads_its_jobs_over_the_workers(manager, project):
    """``execute --sweep`` on a swarm target: four jobs at once are four services, which Swarm spreads over
    both workers; each output notebook is named by its parameters and says where it ran."""
    import io

    from jupyter_containers.cli import _parser
    from jupyter_containers.frontend import execute_from_args

    source = write_notebook(
        project / "sweep.ipynb",
        ("seed = 0", ["parameters"]),
        "import os, time; time.sleep(2); print(os.environ['JUPYTER_CONTAINERS_NODE'], seed)",
    )
    out_dir = project / "sweep-out"
    args = _parser().parse_args(
        ["execute", str(source), "--env", "sw", "--sweep", "seed=1..4", "-o", str(out_dir)]
        + ["--max-parallel", "4", "--min-parallel", "4", "-q"]
    )
    stream = io.StringIO()
    assert execute_from_args(args, manager, stream=stream) == 0, stream.getvalue()
    assert "sweep: 4 of 4 jobs completed" in stream.getvalue()
    nodes = set()
    for seed in range(1, 5):
        out = nbformat.read(out_dir / f"sweep-seed={seed}.ipynb", as_version=4)
        node, printed_seed = stdout_of(out.cells[-1]).split()
        assert printed_seed == str(seed)
        nodes.add(node)
    assert nodes == {"worker1", "worker2"}
    assert _services(manager) == []


def test_a_run_gives_stdout_and_stderr_separately(manager):
    """As on a single engine: the service log's frames say which stream each line came from."""
    out: list[bytes] = []
    err: list[bytes] = []
    # when a command prints to both streams, interleaved
    _, _, result = manager.run(
        "sw", ["sh", "-c", "echo out1; echo err1 >&2; echo out2; echo err2 >&2"], stdout=out.append, stderr=err.append
    )
    # then each stream comes back on its own, whole and in order
    assert result.exit_code == 0
    assert b"".join(out) == b"out1\nout2\n"
    assert b"".join(err) == b"err1\nerr2\n"


def test_a_task_runs_without_capabilities(manager):
    """The task's container has none of the capabilities the single-engine backend drops (cap_drop ALL): its
    bounding set is empty, so nothing it executes (a setuid binary) can gain one. no_new_privs is set only when the
    manager's engine speaks API 1.46 (this one is 20.10, API 1.41: it has no such field for services)."""
    from jupyter_containers.backends.swarm import NO_NEW_PRIVILEGES_API

    out: list[bytes] = []
    _, _, result = manager.run("sw", ["python3", "-c", "print(open('/proc/self/status').read())"], stdout=out.append)
    assert result.exit_code == 0
    status = dict(
        line.split(":", 1) for line in b"".join(out).decode().splitlines() if line.startswith(("Cap", "NoNewPrivs"))
    )
    # Docker's default set (without the drop) is 00000000a80425fb in each of these
    assert {k: int(status[k], 16) for k in ("CapBnd", "CapEff", "CapPrm", "CapAmb")} == dict.fromkeys(
        ("CapBnd", "CapEff", "CapPrm", "CapAmb"), 0
    )
    expected = "1" if manager.backend.api_at_least(NO_NEW_PRIVILEGES_API) else "0"
    assert status["NoNewPrivs"].strip() == expected


def test_prune_removes_swarm_secrets_left_behind_and_keeps_live_ones(manager, project, monkeypatch, tmp_path, capfd):
    """``jupyter-containers prune --target sw``: a kernel-like service whose connection-file secret outlived it
    (its service removed behind our back, its owning process gone) loses that secret; an orphaned kernel (its
    service still there, its process gone) loses its service and the secret with it; ``--dry-run`` lists what the
    run then removes and removes nothing; a live kernel keeps its service and secret, and so do a secret its
    (live) process has just created (until SECRET_GRACE has passed) and another user's."""
    import subprocess

    from jupyter_containers import cli
    from jupyter_containers.backends.base import RunRequest, labels
    from jupyter_containers.spec.model import Resources

    monkeypatch.setenv("JUPYTER_CONTAINERS_RUNTIME_DIR", str(tmp_path))  # prune's socket folders: this test's own
    backend = manager.backend
    api = backend.api
    image = manager.build("sw").image
    dead = subprocess.Popen(["true"])
    dead.wait()

    def kernel_like(owner_pid: int):
        owner = {**manager.ownership(), "owner_pid": str(owner_pid)}
        container = backend.create(
            RunRequest(
                image=image,
                command=["sleep", "300"],
                resources=Resources(),
                labels=labels(env="sw", role="kernel", **owner),
            )
        )
        container.put_files("/tmp", {"kernel.json": b"{}"})  # before the start: in a secret of the service
        container.start()
        (held,) = api.inspect_service(container.id)["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"]
        return container, held["SecretID"]

    live, live_secret = kernel_like(os.getpid())
    gone, gone_secret = kernel_like(dead.pid)
    orphan, orphan_secret = kernel_like(dead.pid)
    fresh = api.create_secret("jc-test-fresh", b"x", labels=labels(role="kernel", **manager.ownership()))["ID"]
    other = labels(role="kernel", **{**manager.ownership(), "owner_uid": str(os.getuid() + 1), "owner_pid": "1"})
    foreign = api.create_secret("jc-test-foreign", b"x", labels=other)["ID"]
    try:
        # given the second kernel's service removed behind our back (its secret stays: nobody removed it)
        api.remove_service(gone.id)
        assert gone_secret in {s["ID"] for s in api.secrets()}
        # when prune runs with --dry-run
        code = cli.main(["prune", "-f", str(project / "containers.toml"), "--target", "sw", "--dry-run"])
        printed = capfd.readouterr().out
        # then it lists the orphan's service and the leftover secret (the orphan's goes with its service), and
        # removes nothing
        assert code == 0 and "would remove 1 containers" in printed and "1 leftover swarm secrets" in printed, printed
        assert {gone_secret, orphan_secret, live_secret} <= {s["ID"] for s in api.secrets()}
        assert orphan.id in {s["ID"] for s in _services(manager)}
        # when prune runs on the swarm target
        code = cli.main(["prune", "-f", str(project / "containers.toml"), "--target", "sw"])
        printed = capfd.readouterr().out
        # then only the leftover secret went, and prune said so
        assert code == 0
        left = {s["ID"] for s in api.secrets()}
        assert gone_secret not in left and orphan_secret not in left
        assert {live_secret, fresh, foreign} <= left
        assert "removed 1 containers" in printed and "1 leftover swarm secrets" in printed, printed
        assert {s["ID"] for s in _services(manager)} == {live.id}
        # and once past the grace a live process has to create the service, its unheld secret is a leftover too
        monkeypatch.setattr("jupyter_containers.manager.SECRET_GRACE", 0.0)
        assert cli.main(["prune", "-f", str(project / "containers.toml"), "--target", "sw"]) == 0
        left = {s["ID"] for s in api.secrets()}
        assert fresh not in left and {live_secret, foreign} <= left
    finally:
        live.remove()
        for secret in (fresh, foreign):
            backend.remove_secret(secret)
    assert _services(manager) == []


def test_a_job_whose_worker_dies_is_reported_failed(manager, project, swarm):
    from jupyter_containers.jobs.runner import ExecuteRequest
    from jupyter_containers.spec.model import Resources

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import time; print('started', flush=True); time.sleep(300)")]
    source = project / "dies.ipynb"
    nbformat.write(nb, source)
    with _worker2_dies_while_running(manager, swarm, drain_worker1=False):
        result = manager.execute(
            ExecuteRequest(
                notebook=source,
                environment="sw",
                output_path=project / "dies.out.ipynb",
                resources=Resources(constraints=("node.hostname==worker2",)),
            ),
            log=lambda _: None,
        )
        assert result.status == "failed"
        assert "worker2" in json.dumps(result.error) and "down" in json.dumps(result.error)
    assert _services(manager) == []


def test_a_job_whose_worker_dies_runs_again_on_another_worker_when_asked(manager, project, swarm):
    """``reschedule_on_node_failure`` (the target's field; set on the module's backend for this test): the job's
    first attempt is placed on worker2 (worker1 drained until then), worker2's engine is killed mid-cell, and the
    job runs again from the start on worker1, its log saying why."""
    from jupyter_containers.jobs.runner import ExecuteRequest

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "import os, time\nnode = os.environ['JUPYTER_CONTAINERS_NODE']\nprint('on', node, flush=True)\n"
            "time.sleep(300 if node == 'worker2' else 0)"
        )
    ]
    source = project / "moves.ipynb"
    nbformat.write(nb, source)
    output = project / "moves.out.ipynb"
    lines: list[str] = []
    manager.backend.reschedule_on_node_failure = True
    try:
        with _worker2_dies_while_running(manager, swarm):
            result = manager.execute(
                ExecuteRequest(notebook=source, environment="sw", output_path=output), log=lines.append
            )
        assert result.status == "completed", result
        assert "on worker1" in json.dumps(nbformat.read(output, as_version=4).cells[-1].outputs)
        said = [line for line in lines if "went down while the job ran" in line]
        assert said and "the swarm node worker2" in said[0] and "from the start on another node" in said[0]
    finally:
        manager.backend.reschedule_on_node_failure = False
    assert _services(manager) == []


def test_run_with_reschedule_runs_again_on_another_worker_when_its_worker_dies(manager, project, swarm, capfd):
    """``jupyter-containers run --target sw --reschedule`` (the target itself does not ask for it): the command's
    first attempt is placed on worker2 (worker1 drained until then), worker2's engine is killed while it runs, and
    the command runs again from the start on worker1, the CLI saying why."""
    from jupyter_containers import cli

    script = 'echo "on $JUPYTER_CONTAINERS_NODE"; [ "$JUPYTER_CONTAINERS_NODE" = worker2 ] && sleep 300; echo done'
    with _worker2_dies_while_running(manager, swarm):
        code = cli.main(
            ["run", "sw", "-f", str(project / "containers.toml"), "--target", "sw", "--reschedule"]
            + ["--", "sh", "-c", script]
        )
    captured = capfd.readouterr()
    assert code == 0, captured.err + captured.out
    assert captured.out.endswith("on worker1\ndone\n"), captured.out
    assert "the swarm node worker2 went down while the command ran" in captured.err
    assert "from the start on another node" in captured.err
    assert _services(manager) == []


@contextmanager
def _worker2_dies_while_running(manager, swarm, *, drain_worker1: bool = True):
    """worker2's engine is killed once a task of ours runs there (and restarted at the end, the node ready
    again). With ``drain_worker1``, worker1 takes no task until just before the kill, so that the first attempt
    lands on worker2 and a rescheduled one on worker1."""
    worker = swarm.by_hostname("worker2")
    # worker2 back whole from the tests before that killed it: a task assigned while it re-registers is rejected
    _wait_node_ready(manager, "worker2")
    if drain_worker1:
        _set_availability(manager, "worker1", "drain")
    before = (lambda: _set_availability(manager, "worker1", "active")) if drain_worker1 else None
    killer = threading.Thread(target=_kill_when_running, args=(manager, worker), kwargs={"before": before}, daemon=True)
    killer.start()
    try:
        yield
    finally:
        _set_availability(manager, "worker1", "active")
        killer.join(60)
        worker.start_engine()
        _wait_node_ready(manager, "worker2")


def _wait_node_ready(manager, hostname: str, timeout: float = 60) -> None:
    """Until the node is ready with its whole description (its two GPUs: it registered again after a restart)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(n.name == hostname and n.state == "ready" and n.gpus == 2 for n in manager.backend.nodes()):
            return
        time.sleep(0.5)
    raise AssertionError(f"the swarm node {hostname} was not ready again within {timeout:.0f} s")


def _set_availability(manager, hostname: str, availability: str) -> None:
    api = manager.backend.api
    (node,) = api.nodes(filters={"name": hostname})
    if node["Spec"].get("Availability") != availability:
        api.update_node(node["ID"], node["Version"]["Index"], {**node["Spec"], "Availability": availability})


def _kill_when_running(manager, worker, before=None) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if any(c.node == "worker2" for c in _running(manager)):
            time.sleep(2)  # the kernel answers, the cell runs
            if before is not None:
                before()
            worker.kill_engine()
            return
        time.sleep(0.2)


def _running(manager) -> list:
    return [c for c in manager.backend.list_containers() if c.state == "running"]


def _quietly(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - what the test checks is that it returned at all
        return exc
