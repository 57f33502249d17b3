"""The pure parts of the Swarm backend: the service spec sent to the manager, the placement check that stands in
for Swarm's silence about requests no node can hold, and the ``kind = "swarm"`` target table."""

from __future__ import annotations

from pathlib import Path

import pytest

from jupyter_containers.backends.base import Mount, NodeInfo, RunRequest
from jupyter_containers.backends.swarm import (
    GO_MARKER,
    check_constraint,
    matches,
    placement_problem,
    registry_reference,
    service_spec,
)
from jupyter_containers.errors import RequestError, SpecError
from jupyter_containers.spec.model import Resources
from jupyter_containers.spec.parse import parse_resources
from jupyter_containers.targets import backend_settings, parse_targets, workspace_mode

GiB = 1 << 30


def node(name: str, cpus: float = 2, memory: int = 8 * GiB, gpus: int = 2, state: str = "ready", **labels: str):
    return NodeInfo(name=name, address="10.0.0.1", cpus=cpus, memory=memory, gpus=gpus, state=state, labels=labels)


NODES = [node("manager"), node("worker1", gpu="a100"), node("worker2")]
RAW = {n.name: {"Spec": {"Role": "manager" if n.name == "manager" else "worker"}} for n in NODES}


def spec_of(resources: Resources, **kwargs):
    request = RunRequest(
        image="reg:5000/ml/demo:abc",
        command=["python", "-m", "ipykernel_launcher"],
        resources=resources,
        labels={"io.jupyter.containers.env": "demo"},
        publish=kwargs.pop("publish", ()),
        mounts=kwargs.pop("mounts", ()),
        working_dir="/workspace",
    )
    return service_spec(
        request,
        image=request.image,
        user="1000:1000",
        constraints=kwargs.pop("constraints", ["node.role==worker"]),
        gpu_resource="NVIDIA-GPU",
        **kwargs,
    )


def test_limits_are_reservations_and_gpus_a_generic_resource():
    spec = spec_of(Resources(cpus=1.5, memory=2 * GiB, gpus=2, pids=256, constraints=("node.labels.gpu==a100",)))
    task = spec["TaskTemplate"]
    assert task["Resources"]["Limits"] == {"NanoCPUs": 1_500_000_000, "MemoryBytes": 2 * GiB, "Pids": 256}
    assert task["Resources"]["Reservations"] == {
        "NanoCPUs": 1_500_000_000,
        "MemoryBytes": 2 * GiB,
        "GenericResources": [{"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": 2}}],
    }
    assert task["Placement"]["Constraints"] == ["node.role==worker", "node.labels.gpu==a100"]
    # one task, never restarted behind the kernel's back
    assert spec["Mode"] == {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}}
    assert task["RestartPolicy"]["Condition"] == "none"
    container = task["ContainerSpec"]
    assert container["User"] == "1000:1000" and container["CapabilityDrop"] == ["ALL"] and container["Init"]
    assert "JC_GPU_RESOURCE=NVIDIA-GPU" in container["Env"]
    assert (
        container["Labels"]["io.jupyter.containers.managed"]
        == "true"
        == spec["Labels"]["io.jupyter.containers.managed"]
    )
    # the command runs behind the shim, after the image's own entrypoint
    assert container["Args"][0:2] == ["sh", "-c"] and container["Args"][-3:] == ["python", "-m", "ipykernel_launcher"]
    assert "Command" not in container


def test_kernel_ports_are_published_on_the_tasks_node_and_files_awaited():
    spec = spec_of(Resources(), publish=(50001, 50002), wait_for_files=True)
    assert spec["EndpointSpec"]["Ports"] == [
        {"Protocol": "tcp", "TargetPort": 50001, "PublishMode": "host"},
        {"Protocol": "tcp", "TargetPort": 50002, "PublishMode": "host"},
    ]
    assert f"JC_WAIT_FOR={GO_MARKER}" in spec["TaskTemplate"]["ContainerSpec"]["Env"]


def test_a_named_volume_is_created_on_the_node_with_its_owner_and_the_service_that_made_it():
    """The synced /workspace: the node's engine creates the volume on first use; its labels let prune find it and
    tell a sync that it is new (made by this very service), and the task waits as long as a start may take."""
    request = RunRequest(
        image="reg:5000/ml/demo:abc",
        mounts=(Mount("jupyter-containers-ws-0123", "/workspace", type="volume"),),
        labels={
            "io.jupyter.containers.owner-uid": "1000",
            "io.jupyter.containers.workspace": "/home/me/p",
            "io.jupyter.containers.owner-pid": "42",
            "io.jupyter.containers.role": "run",
        },
        name="jc-abc",
    )
    spec = service_spec(
        request,
        image=request.image,
        user="1000:1000",
        constraints=[],
        gpu_resource="NVIDIA-GPU",
        wait_for_files=True,
        wait_seconds=600,
    )
    container = spec["TaskTemplate"]["ContainerSpec"]
    (mount,) = container["Mounts"]
    assert mount["Type"] == "volume" and mount["Source"] == "jupyter-containers-ws-0123"
    assert mount["VolumeOptions"]["Labels"] == {
        "io.jupyter.containers.owner-uid": "1000",
        "io.jupyter.containers.workspace": "/home/me/p",
        "io.jupyter.containers.managed": "true",
        "io.jupyter.containers.role": "workspace",
        "io.jupyter.containers.volume-created-by": "jc-abc",
    }
    assert spec["Name"] == "jc-abc"
    assert f"JC_WAIT_FOR={GO_MARKER}" in container["Env"] and "JC_WAIT_SECONDS=600" in container["Env"]


def test_synced_tasks_are_kept_off_nodes_missing_from_the_nodes_table():
    from jupyter_containers.backends.swarm import sync_constraints

    assert sync_constraints(NODES, {"worker1": "tcp://w1:2376", "manager": "tcp://m:2376"}) == [
        "node.hostname!=worker2"
    ]
    assert sync_constraints(NODES, {n.name: "tcp://x" for n in NODES}) == []
    # and those constraints are what the placement check sees: no node left says so
    problem = placement_problem(
        Resources(), ["node.role==worker", *sync_constraints(NODES, {"manager": "m"})], NODES, RAW
    )
    assert problem is not None and "node.hostname!=worker1 and node.hostname!=worker2" in problem


def test_the_backend_syncs_only_requests_that_mount_its_hooks_volume():
    """Which tasks wait for their node's sync: those mounting the hook's volume, never a build's probe (it runs on
    the manager's engine). The hook is a stand-in with only its volume's name: nothing is synced here."""
    from types import SimpleNamespace

    from jupyter_containers.backends.swarm import SwarmBackend

    backend = SwarmBackend(base_url="tcp://manager:2376")
    synced = RunRequest(image="i", mounts=(Mount("ws-1", "/workspace", type="volume"),))
    assert backend.syncs_workspace(synced) is False  # no hook: a target without sync
    backend.workspace_hook = SimpleNamespace(volume="ws-1")
    assert backend.syncs_workspace(synced) is True
    assert backend.syncs_workspace(RunRequest(image="i", mounts=(Mount("other", "/data", type="volume"),))) is False
    probe = RunRequest(image="i", mounts=synced.mounts, labels={"io.jupyter.containers.role": "python-probe"})
    assert backend.syncs_workspace(probe) is False


SYNC_SPEC = """
[environments.demo]
pip = []

[targets.sw]
kind = "swarm"
engine = "tcp://manager:2376"

[targets.sw.nodes]
worker1 = "tcp://worker1:2376"

[targets.shared]
kind = "swarm"
engine = "tcp://manager:2376"
workspace = "/shared/projects"

[targets.shared.nodes]
worker1 = "tcp://worker1:2376"
"""


def test_a_swarm_target_with_nodes_syncs_its_workspace_through_the_backend(tmp_path):
    """The manager's side: /workspace is the workspace's named volume, the backend gets the per-node hook, and the
    manager itself sends nothing before a run (no node is known yet); a shared folder stays a bind mount. No engine
    is contacted (the swarm's manager does not exist here)."""
    from jupyter_containers.manager import ContainersManager
    from jupyter_containers.workspace_sync import SwarmWorkspaces, volume_name

    (tmp_path / "containers.toml").write_text(SYNC_SPEC)
    manager = ContainersManager(spec_path=tmp_path / "containers.toml", target="sw")
    assert manager.workspace_mode() == "sync"
    (mount,) = manager.mounts()
    assert (mount.source, mount.target, mount.type) == (volume_name(tmp_path.resolve()), "/workspace", "volume")
    hook = manager.backend.workspace_hook
    assert isinstance(hook, SwarmWorkspaces) and hook.volume == mount.source and hook.manager is manager
    assert manager.sync_up("any-image") is None and manager.sync_down("any-image") is None
    # and a swarm with a folder every node has bind-mounts it, syncing nothing
    shared = manager.for_target("shared")
    assert shared.workspace_mode() == "/shared/projects"
    assert [(m.source, m.type) for m in shared.mounts()] == [(Path("/shared/projects"), "bind")]
    assert shared.backend.workspace_hook is None


def test_shm_is_a_tmpfs_and_mounts_pass_through():
    spec = spec_of(Resources(shm_size=GiB), mounts=(Mount(Path("/shared/p"), "/workspace"),))
    mounts = spec["TaskTemplate"]["ContainerSpec"]["Mounts"]
    assert {"Type": "bind", "Source": "/shared/p", "Target": "/workspace", "ReadOnly": False} in mounts
    assert {"Type": "tmpfs", "Target": "/dev/shm", "TmpfsOptions": {"SizeBytes": GiB}} in mounts


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        (Resources(gpus="all"), "ask for a number of GPUs"),
        (Resources(gpus=("0", "2")), "--gpus 0,2"),
        (Resources(memory=GiB, memory_swap=2 * GiB), "no swap setting"),
        (Resources(constraints=("gpu==a100",)), "is not KEY==VALUE"),
    ],
)
def test_what_a_service_cannot_express_is_refused(resources, message):
    with pytest.raises(RequestError, match=message.replace("(", r"\(")):
        spec_of(resources)


def test_no_network_is_refused_naming_the_target_and_the_field():
    """A Swarm service cannot be without a network (tests/integration/test_swarm.py shows the engine refusing the
    "none" network and the bridge network a task without one gets), so network = false is not sent at all."""
    # when a request without a network is turned into a service spec for the target "sw"
    with pytest.raises(RequestError) as caught:
        spec_of(parse_resources({"network": False}), target="sw")
    # then it is refused, saying which field, which target and what to do instead
    message = str(caught.value)
    assert message.startswith("resources.network = false (--network none) cannot run on target 'sw'")
    assert "a Swarm service always has a network" in message and "run it on a Docker engine target" in message
    # and the network on (the default) is no field of the spec: the engine's default networking
    assert "Networks" not in spec_of(Resources(), target="sw")["TaskTemplate"]


def test_a_swarm_targets_backend_refuses_no_network_before_asking_its_manager(tmp_path):
    """Through the target's backend (its manager's address does not resolve: a request that reached the engine
    would fail with EngineUnavailableError, not this)."""
    from jupyter_containers.manager import ContainersManager

    # given the backend of the swarm target "sw"
    (tmp_path / "containers.toml").write_text(RESCHEDULE_SPEC)
    backend = ContainersManager(spec_path=tmp_path / "containers.toml", target="sw").backend
    assert backend.kind == "swarm" and backend.target_name == "sw"
    request = RunRequest(image="demo:abc", command=["true"], resources=Resources(network=False))
    # when a container or a run without a network is asked of it, then both are refused, naming the target
    with pytest.raises(RequestError, match="cannot run on target 'sw'"):
        backend.create(request)
    with pytest.raises(RequestError, match="cannot run on target 'sw'"):
        backend.run(request)


def test_reschedule_makes_a_failed_task_start_again():
    assert spec_of(Resources(), restart_attempts=2)["TaskTemplate"]["RestartPolicy"] == {
        "Condition": "on-failure",
        "MaxAttempts": 2,
    }


def test_constraints_are_checked_like_swarm():
    assert check_constraint(" node.labels.gpu == a100 ") == ("node.labels.gpu", "==", "a100")
    assert matches(NODES[1], ["node.labels.gpu==a100", "node.role!=manager"], RAW["worker1"])
    assert not matches(NODES[2], ["node.labels.gpu==a100"], RAW["worker2"])  # a missing label equals nothing
    assert matches(NODES[2], ["node.labels.gpu!=a100", "node.hostname==worker2"], RAW["worker2"])


def test_a_request_no_node_can_hold_says_what_the_nodes_have():
    message = placement_problem(Resources(gpus=3), ["node.role==worker"], NODES, RAW)
    assert message is not None
    assert message.startswith("no node has 3 GPUs (most: 2) (asked for 3 GPUs on a node with node.role==worker)")
    assert "worker1 (ready: 2 CPUs, 8 GiB, 2 GPUs, labels gpu=a100)" in message
    memory = placement_problem(Resources(memory=500 * GiB), [], NODES, RAW)
    assert memory is not None and "no node has 500 GiB of memory (most: 8 GiB)" in memory
    # each fits somewhere, but not together on one node
    mixed = [node("a", cpus=8, gpus=0), node("b", cpus=1, gpus=2)]
    both = placement_problem(Resources(cpus=4, gpus=1), [], mixed)
    assert both is not None and "all of it at once" in both


def test_constraints_no_node_matches_and_nodes_down_are_named():
    unmatched = placement_problem(Resources(), ["node.labels.gpu==h100"], NODES, RAW)
    assert unmatched is not None and "no ready node matches the placement constraints" in unmatched
    down = placement_problem(Resources(), [], [node("w", state="down")])
    assert down is not None and "no node of the swarm is ready" in down and "w (down:" in down


def test_what_fits_is_not_refused():
    assert placement_problem(Resources(cpus=2, memory=8 * GiB, gpus=2), ["node.role==worker"], NODES, RAW) is None
    assert placement_problem(Resources(), [], NODES) is None


def test_the_registry_reference_keeps_the_content_addressed_tag():
    assert registry_reference("jupyter-containers/demo:0123abcd", "reg:5000/ml") == "reg:5000/ml/demo:0123abcd"
    assert registry_reference("demo", "reg:5000/ml/") == "reg:5000/ml/demo:latest"


def test_run_level_constraints_parse_and_bad_ones_name_the_key():
    assert parse_resources({"constraints": ["node.labels.gpu==a100"]}).constraints == ("node.labels.gpu==a100",)
    with pytest.raises(SpecError, match="constraints: 'gpu' is not a placement constraint"):
        parse_resources({"constraints": ["gpu"]})


def test_a_swarm_target_table(tmp_path):
    raw = {
        "sw": {
            "kind": "swarm",
            "engine": "ssh://manager",
            "registry": "reg:5000/ml",
            "constraints": ["node.labels.gpu==a100"],
            "nodes": {"worker1": "ssh://worker1"},
            "generic_resource": "GPU",
            "reschedule_on_node_failure": True,
        }
    }
    target = parse_targets(raw, tmp_path / "containers.toml")["sw"]
    assert (
        target.kind == "swarm"
        and target.registry == "reg:5000/ml"
        and dict(target.nodes) == {"worker1": "ssh://worker1"}
    )
    settings = backend_settings(target)
    assert settings["base_url"] == "ssh://manager" and settings["registry"] == "reg:5000/ml"
    assert settings["constraints"] == ["node.labels.gpu==a100"] and settings["node_engines"] == {
        "worker1": "ssh://worker1"
    }
    assert settings["gpu_resource"] == "GPU" and settings["reschedule_on_node_failure"] is True
    # a nodes table and no shared folder: /workspace is each node's volume, synced through its engine
    assert workspace_mode(target, "ssh://manager") == "sync"
    del raw["sw"]["nodes"]
    assert workspace_mode(parse_targets(raw, tmp_path / "c.toml")["sw"], "ssh://manager") == "none"
    # and the default: a job whose node dies is reported failed
    del raw["sw"]["reschedule_on_node_failure"]
    assert "reschedule_on_node_failure" not in backend_settings(parse_targets(raw, tmp_path / "c.toml")["sw"])


@pytest.mark.parametrize(
    ("table", "key", "message"),
    [
        ({"engine": "ssh://m", "constraints": ["node.role==worker"]}, "targets.t.constraints", 'for kind = "swarm"'),
        ({"kind": "swarm", "engine": "ssh://m", "workspace": "mount"}, "targets.t.workspace", "needs a single engine"),
        (
            {"kind": "swarm", "engine": "ssh://m", "workspace": "sync"},
            "targets.t.workspace",
            r"add a \[targets.t.nodes\]",
        ),
        ({"kind": "swarm", "engine": "ssh://m", "namespace": "ml"}, "targets.t.namespace", 'kind = "kubernetes"'),
        (
            {"kind": "swarm", "engine": "ssh://m", "reschedule_on_node_failure": "yes"},
            "targets.t.reschedule_on_node_failure",
            "'yes': true or false",
        ),
        (
            {"engine": "ssh://m", "reschedule_on_node_failure": True},
            "targets.t.reschedule_on_node_failure",
            'for kind = "swarm"',
        ),
    ],
)
def test_swarm_fields_in_the_wrong_place_name_the_key(tmp_path, table, key, message):
    with pytest.raises(SpecError, match=message) as caught:
        parse_targets({"t": table}, tmp_path / "containers.toml")
    assert caught.value.key == key


def test_files_put_before_the_start_arrive_in_one_archive_with_the_go_ahead_last():
    import io
    import tarfile

    from jupyter_containers.backends.swarm import _combined, _tar

    archive = _combined(
        [("/run", _tar({"jupyter-containers/kernel.json": b"{}"}, "1000", "1000"))], GO_MARKER, "1000", "1000"
    )
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["run/jupyter-containers/kernel.json", GO_MARKER.lstrip("/")]
        assert all(m.uid == 1000 and m.mode == 0o600 for m in members)
        assert tar.extractfile(members[0]).read() == b"{}"  # type: ignore[union-attr]


def test_files_put_before_the_start_travel_in_a_secret_into_the_users_in_memory_folder():
    """The kernel's connection file: a secret the shim unpacks (no wait for the task to be reported running),
    its folder a tmpfs volume owned by the container's user; nothing of the file in the service's spec."""
    spec = spec_of(Resources(), files_secret=("sec123", "jc-abc-files"), folders=[("/run/jupyter-containers", 0o700)])
    container = spec["TaskTemplate"]["ContainerSpec"]
    assert container["Secrets"] == [
        {
            "SecretID": "sec123",
            "SecretName": "jc-abc-files",
            "File": {"Name": "jupyter-containers-files.tar", "UID": "1000", "GID": "1000", "Mode": 0o400},
        }
    ]
    assert "JC_FILES=/run/secrets/jupyter-containers-files.tar" in container["Env"]
    assert not any(e.startswith("JC_WAIT_FOR=") for e in container["Env"])
    assert {
        "Type": "volume",
        "Target": "/run/jupyter-containers",
        "VolumeOptions": {
            "DriverConfig": {
                "Name": "local",
                "Options": {"type": "tmpfs", "device": "tmpfs", "o": "uid=1000,gid=1000,mode=700"},
            }
        },
    } in container["Mounts"]


def test_the_shim_unpacks_the_secrets_files_before_the_command(tmp_path):
    """The shim itself, run by this machine's Python as the task's would run it: the files are in place, with
    their modes, when the command starts."""
    import io
    import subprocess
    import sys
    import tarfile

    from jupyter_containers.backends.swarm import ENTRYPOINT_SHIM, _combined, _folders

    folder = tmp_path / "run" / "jupyter-containers"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        directory = tarfile.TarInfo("jupyter-containers")
        directory.type, directory.mode = tarfile.DIRTYPE, 0o700
        data = b'{"key": "k"}'
        info = tarfile.TarInfo("jupyter-containers/kernel.json")
        info.size, info.mode = len(data), 0o600
        tar.addfile(directory)
        tar.addfile(info, io.BytesIO(data))
    pending = [(str(tmp_path / "run"), buf.getvalue())]
    assert _folders(pending) == [(str(folder), 0o700)]
    secret = tmp_path / "secret.tar"
    secret.write_bytes(_combined(pending))
    folder.mkdir(parents=True)  # the in-memory folder Swarm mounts
    command = "import os, stat, sys; p = sys.argv[1]; print(open(p).read(), oct(stat.S_IMODE(os.stat(p).st_mode)))"
    shown = subprocess.run(
        [sys.executable, "-c", ENTRYPOINT_SHIM, sys.executable, "-c", command, str(folder / "kernel.json")],
        env={"PATH": "/usr/bin:/bin", "JC_FILES": str(secret)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout.split() == ['{"key":', '"k"}', "0o600"]


@pytest.mark.parametrize(("no_new_privileges", "privileges"), [(False, None), (True, {"NoNewPrivileges": True})])
def test_privileges_are_dropped_as_far_as_the_engines_api_says(no_new_privileges, privileges):
    """API 1.41 (Docker 20.10) has CapabilityDrop but no way to set no_new_privs on a service; 1.46 has
    ``Privileges.NoNewPrivileges`` (``no_new_privileges`` is what the backend passes for such an engine)."""
    container = spec_of(Resources(), no_new_privileges=no_new_privileges)["TaskTemplate"]["ContainerSpec"]
    # every capability the single-engine backend drops (cap_drop=["ALL"]) is dropped here too
    assert container["CapabilityDrop"] == ["ALL"]
    assert container.get("Privileges") == privileges


@pytest.mark.parametrize(
    ("api_version", "expected"), [("1.41", False), ("1.45", False), ("1.46", True), ("1.47", True)]
)
def test_no_new_privileges_is_asked_of_engines_from_api_1_46(api_version, expected):
    """The version check itself: the client's negotiated API version (the engine's own). Only the version is
    stood in for (a 1.46 engine cannot run here: the engine is 20.10); the backend reads it as from docker-py."""
    from types import SimpleNamespace

    from jupyter_containers.backends.swarm import NO_NEW_PRIVILEGES_API, SwarmBackend

    backend = SwarmBackend(base_url="tcp://manager:2376")
    backend._api = SimpleNamespace(api_version=api_version)  # type: ignore[attr-defined]
    assert backend.api_at_least(NO_NEW_PRIVILEGES_API) is expected


RESCHEDULE_SPEC = """
[environments.demo]
pip = []

[environments.away]
pip = []
target = "sw"

[targets.sw]
kind = "swarm"
engine = "tcp://manager:2376"

[targets.box]
engine = "ssh://gpu-box"
"""


def _reschedule(tmp_path, argv):
    """``argv`` parsed by the CLI's parser and its --reschedule applied to the command's manager (nothing reaches
    an engine: the flag is settled before the build)."""
    from jupyter_containers import cli
    from jupyter_containers.manager import ContainersManager

    (tmp_path / "containers.toml").write_text(RESCHEDULE_SPEC)
    args = cli._parser().parse_args(argv)
    manager = ContainersManager(spec_path=tmp_path / "containers.toml", target=args.target or "")
    cli._apply_reschedule(args, manager)
    return args, manager


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "demo", "--target", "sw", "--reschedule"],
        ["execute", "nb.ipynb", "--env", "demo", "--target", "sw", "--reschedule"],
        ["run", "away", "--reschedule"],  # the environment's own target = "sw"
    ],
)
def test_reschedule_turns_on_the_swarm_backends_rescheduling_for_this_run(tmp_path, argv):
    args, manager = _reschedule(tmp_path, argv)
    backend = manager.for_environment(args.env).backend
    assert backend.kind == "swarm" and backend.reschedule_on_node_failure is True


def test_without_reschedule_the_target_decides(tmp_path):
    args, manager = _reschedule(tmp_path, ["run", "demo", "--target", "sw"])
    assert args.reschedule is False
    assert manager.for_environment("demo").backend.reschedule_on_node_failure is False


@pytest.mark.parametrize(
    ("argv", "where"),
    [
        (["run", "demo", "--target", "box", "--reschedule", "--", "true"], "target 'box' (kind 'docker')"),
        (["execute", "nb.ipynb", "--env", "demo", "--reschedule"], "the local engine"),
    ],
)
def test_reschedule_off_a_swarm_is_refused_naming_the_target(tmp_path, capsys, monkeypatch, argv, where):
    from jupyter_containers import cli

    # given a spec file whose environment runs on a plain Docker target (or the local engine)
    (tmp_path / "containers.toml").write_text(RESCHEDULE_SPEC)
    (tmp_path / "nb.ipynb").write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    monkeypatch.chdir(tmp_path)
    # when --reschedule is asked for
    code = cli.main(argv)
    # then the command fails before any build, saying why
    err = capsys.readouterr().err
    assert code == 1
    assert f"--reschedule: 'demo' runs on {where}, not on a swarm" in err and 'kind = "swarm"' in err


def test_the_service_logs_frames_keep_their_stream():
    """The engine's multiplexed log (what ``GET /services/ID/logs`` answers for a task without a TTY): each frame's
    header says stdout (1), stderr (2) or the engine's own error (3, never the program's output); a frame cut short
    by a closed stream still gives what arrived."""
    import io
    import struct

    from jupyter_containers.backends.swarm import STDERR, STDOUT, SYSERR, log_frames

    def frame(stream: int, data: bytes) -> bytes:
        return struct.pack(">BxxxL", stream, len(data)) + data

    raw = frame(1, b"out1\n") + frame(2, b"err1\n") + frame(3, b"Error grabbing logs\n") + frame(1, b"out2\n")
    raw += frame(2, b"cut sh")[:-2]
    assert list(log_frames(io.BytesIO(raw))) == [
        (STDOUT, b"out1\n"),
        (STDERR, b"err1\n"),
        (SYSERR, b"Error grabbing logs\n"),
        (STDOUT, b"out2\n"),
        (STDERR, b"cut "),
    ]


def test_a_task_rejected_as_its_node_went_down_is_lost_with_that_node():
    """A running task of a killed worker is "rejected: assigned node no longer meets constraints" by Swarm's
    constraint enforcer, its ContainerStatus still holding the ExitCode 0 of a running container (the shape
    below is what the real swarm answered in a full run of tests/integration/test_swarm.py, where the job and
    run tests failed on it). That task lost its node: the state says so and rescheduling can ask for it, and the
    0 must not read as success. The manager's answers stand in for the swarm: which task the enforcer rejects
    and when cannot be chosen on the real one."""
    from types import SimpleNamespace

    from jupyter_containers.backends.swarm import SwarmBackend

    node = {
        "ID": "n2",
        "Description": {"Hostname": "worker2"},
        "Status": {"State": "down", "Message": "heartbeat failure"},
    }
    backend = SwarmBackend(base_url="tcp://manager:2376")
    backend._api = SimpleNamespace(nodes=lambda *a, **k: [node])  # type: ignore[attr-defined]
    task = {
        "ID": "t1",
        "ServiceID": "s1",
        "NodeID": "n2",
        "DesiredState": "shutdown",
        "Spec": {"ContainerSpec": {"Labels": {"io.jupyter.containers.role": "run"}}},
        "Status": {
            "State": "rejected",
            "Message": "task rejected by constraint enforcer",
            "Err": "assigned node no longer meets constraints",
            "ContainerStatus": {"ContainerID": "c" * 64, "PID": 1534, "ExitCode": 0},
        },
    }
    state = backend._task_state(task)
    assert state.status == "dead" and state.exit_code != 0
    assert "worker2" in state.reason and "down" in state.reason
    assert backend.lost_node({"io.jupyter.containers.role": "run"}) == "worker2"
    # and on a node that is still ready, a rejection is a failure, never an exit code 0
    node["Status"]["State"] = "ready"
    backend._lost = None
    state = backend._task_state(task)
    assert state.status == "exited" and state.exit_code == -1 and "rejected" in state.reason
