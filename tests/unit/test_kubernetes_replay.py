"""The Kubernetes backend's API calls, against recorded exchanges replayed by a loopback server.

What is mocked, and why: the Kubernetes API server. No cluster can run on these machines (no API server or
kubelet is installable), so ``tests/kubernetes_replay.py`` serves the exchanges of ``tests/data/kubernetes/``
on 127.0.0.1 -- written by hand from the Kubernetes API reference, not recorded from a cluster. Everything
else is real: the official ``kubernetes`` client with a generated kubeconfig (in a tmp folder), its HTTP,
watch and websocket (port-forward) code, and our backend. What the client sends (paths, bodies, the
propagation policy of a delete) is checked here; what a real cluster does with it is checked by
``scripts/k8s-check.sh`` on a real cluster (docs/scale-out.md).
"""

from __future__ import annotations

import base64
import io
import socket
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("kubernetes")

from jupyter_containers.backends.base import RunRequest, labels
from jupyter_containers.backends.kubernetes import KubernetesBackend
from jupyter_containers.errors import (
    GpuUnavailableError,
    NotFoundError,
    OutOfMemoryError,
    RunTimeoutError,
)
from jupyter_containers.kernel.container import REMOTE_PORTS
from jupyter_containers.spec.model import Resources

from ..kubernetes_replay import ReplayServer, kubeconfig, load_exchange

IMAGE = "registry.example.org:5000/ml/train:0123abcd"
PODS = "/api/v1/namespaces/ml/pods"
JOBS = "/apis/batch/v1/namespaces/ml/jobs"


@pytest.fixture
def replay(request: pytest.FixtureRequest) -> Iterator[ReplayServer]:
    server = ReplayServer(load_exchange(request.param)["exchanges"]).start()
    try:
        yield server
    finally:
        server.close()
    assert not server.unexpected, f"requests the exchange did not foresee: {server.unexpected}"


def backend_for(server: ReplayServer, tmp_path: Path, **traits) -> KubernetesBackend:
    return KubernetesBackend(
        kubeconfig=str(kubeconfig(tmp_path, server.url)),
        context="replay",
        namespace="ml",
        registry="registry.example.org:5000/ml",
        poll_interval=0.05,
        api_timeout=10,
        **traits,
    )


def kernel_request(name: str, resources: Resources | None = None, role: str = "kernel") -> RunRequest:
    return RunRequest(
        image=IMAGE,
        command=["python", "-m", "ipykernel_launcher", "-f", "/run/jupyter-containers/kernel.json"],
        resources=resources or Resources(cpus=1, memory=1 << 30),
        labels=labels(env="train", role=role, workspace="/home/me/a project"),
        working_dir="/workspace",
        publish=tuple(REMOTE_PORTS.values()),
        name=name,
    )


def connection_tar(content: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        folder = tarfile.TarInfo("jupyter-containers")
        folder.type, folder.mode = tarfile.DIRTYPE, 0o700
        tar.addfile(folder)
        info = tarfile.TarInfo("jupyter-containers/kernel.json")
        info.size, info.mode = len(content), 0o600
        tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


@pytest.mark.parametrize("replay", ["kernel-pod"], indirect=True)
def test_a_kernel_pod_gets_its_connection_file_as_a_secret_and_its_channels_through_port_forward(replay, tmp_path):
    # given a kernel container created with its connection file copied in before start (as ContainerKernel does)
    backend = backend_for(replay, tmp_path)
    container = backend.create(kernel_request("jc-replay-kernel"))
    container.put_archive("/run", connection_tar(b'{"key": "k", "curve_secretkey": "s"}'))

    # when it starts
    container.start()

    # then the Secret, the Pod and the Secret's owner came in that order, and the start waited until Running
    assert replay.mutations() == [
        ("POST", "/api/v1/namespaces/ml/secrets"),
        ("POST", PODS),
        ("PATCH", "/api/v1/namespaces/ml/secrets/jc-replay-kernel-files"),
    ]
    secret = replay.sent("POST", "/secrets")[0].body
    assert base64.b64decode(secret["data"]["f0"]) == b'{"key": "k", "curve_secretkey": "s"}'
    pod = replay.sent("POST", PODS)[0].body
    spec = pod["spec"]
    mounts = {m["mountPath"]: m for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["/run/jupyter-containers/kernel.json"]["subPath"] == "f0"
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    # a label value the API cannot hold (a path with a space) is an annotation, exactly
    assert "io.jupyter.containers.workspace" not in pod["metadata"]["labels"]
    assert pod["metadata"]["annotations"]["io.jupyter.containers.workspace"] == "/home/me/a project"
    patch = replay.sent("PATCH")[0].body
    assert patch["metadata"]["ownerReferences"][0]["uid"] == "5b0c3e0e-0000-4000-8000-000000000001"
    watch = replay.sent("GET", PODS)[0]
    assert watch.query["watch"].lower() == "true" and watch.query["fieldSelector"] == "metadata.name=jc-replay-kernel"
    assert watch.query["resourceVersion"] == "1001"  # from the Pod as last read: only later changes, no polling
    assert container.state().status == "running"

    # when a client connects to the local port of the shell channel
    ports = container.published_ports()
    assert set(ports) == set(REMOTE_PORTS.values())
    host, port = backend.reach(ports[REMOTE_PORTS["shell_port"]])
    assert host == "127.0.0.1"
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(b"zmq greeting")
        reply = b""
        while len(reply) < len(b"ZMQ GREETING"):
            chunk = conn.recv(100)
            if not chunk:
                break
            reply += chunk

    # then the bytes went through the API server's port-forward of that port of that pod, and came back
    assert reply == b"ZMQ GREETING"
    forwarded = [r for r in replay.requests if r.path.endswith("/portforward")]
    assert forwarded[0].path == f"{PODS}/jc-replay-kernel/portforward"
    assert forwarded[0].query["ports"] == str(REMOTE_PORTS["shell_port"])

    # when it is removed
    container.remove()

    # then the pod is deleted (a Job of that name is tried first), and the local listeners are closed
    assert replay.mutations()[-1] == ("DELETE", f"{PODS}/jc-replay-kernel")
    with pytest.raises(OSError):
        socket.create_connection((host, port), timeout=2).close()
    backend.close()


@pytest.mark.parametrize("replay", ["job-oom"], indirect=True)
def test_an_oom_killed_job_raises_as_on_a_docker_engine_and_is_deleted_with_its_pod(replay, tmp_path):
    # given a run with a 1 GiB memory limit
    backend = backend_for(replay, tmp_path)
    out: list[bytes] = []

    # when it runs and its container is OOMKilled
    with pytest.raises(OutOfMemoryError) as raised:
        backend.run(kernel_request("jc-replay-oom", Resources(memory=1 << 30), role="run"), stdout=out.append)

    # then the error and exit code are the Docker backend's, and the log came back
    assert raised.value.exit_code == 137
    assert str(raised.value) == (
        "the container ran out of its 1 GiB memory limit and was killed (exit code 137); raise --memory (or "
        "resources.memory in the spec)"
    )
    assert b"".join(out) == b"allocating 4 GiB\n"
    job = replay.sent("POST", JOBS)[0].body
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    # and the Job was deleted with propagation, so that its Pod goes too
    delete = replay.sent("DELETE", f"{JOBS}/jc-replay-oom")[0]
    assert delete.body["propagationPolicy"] == "Background"


@pytest.mark.parametrize("replay", ["job-deadline"], indirect=True)
def test_a_job_past_its_deadline_raises_the_timeout_of_a_docker_engine(replay, tmp_path):
    # given a run with a 2-second timeout
    backend = backend_for(replay, tmp_path)

    # when the Job's DeadlineExceeded condition comes (its Pod already deleted by the controller)
    with pytest.raises(RunTimeoutError) as raised:
        backend.run(kernel_request("jc-replay-deadline", Resources(timeout=2), role="run"))

    # then: exit code 124 and the Docker backend's words; the deadline was the Job's activeDeadlineSeconds
    assert raised.value.exit_code == 124
    assert "ran longer than its 2s timeout and was killed" in str(raised.value)
    assert replay.sent("POST", JOBS)[0].body["spec"]["activeDeadlineSeconds"] == 2
    assert replay.mutations()[-1] == ("DELETE", f"{JOBS}/jc-replay-deadline")


@pytest.mark.parametrize("replay", ["pod-image-pull"], indirect=True)
def test_an_image_the_nodes_cannot_pull_fails_the_start_and_removes_the_pod(replay, tmp_path):
    # given a kernel whose image is not in the registry
    backend = backend_for(replay, tmp_path)
    container = backend.create(kernel_request("jc-replay-pull"))

    # when it starts
    with pytest.raises(NotFoundError) as raised:
        container.start()

    # then the message names the image, the reason and what to check, and the pod is gone
    text = str(raised.value)
    assert IMAGE in text and "ErrImagePull" in text and "image_pull_secrets" in text
    assert replay.mutations()[-1] == ("DELETE", f"{PODS}/jc-replay-pull")


@pytest.mark.parametrize("replay", ["pod-unschedulable"], indirect=True)
def test_a_pod_no_node_can_hold_fails_within_the_bound_naming_what_the_nodes_have(replay, tmp_path):
    # given 3 GPUs asked of nodes that have 2 each, and no patience for an autoscaler
    backend = backend_for(replay, tmp_path, unschedulable_timeout=0)
    container = backend.create(kernel_request("jc-replay-big", Resources(gpus=3)))

    # when it starts
    with pytest.raises(GpuUnavailableError) as raised:
        container.start()

    # then the scheduler's reason and each node's allocatable GPUs are in the message, and the pod is gone
    text = str(raised.value)
    assert "3 Insufficient nvidia.com/gpu" in text
    assert "gpu-node-1: 15.5 CPUs" in text and "2 nvidia.com/gpu" in text
    pod = replay.sent("POST", PODS)[0].body
    assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "3"
    assert pod["spec"]["volumes"][-1]["emptyDir"]["medium"] == "Memory"  # /dev/shm of a GPU run
    assert replay.mutations()[-1] == ("DELETE", f"{PODS}/jc-replay-big")


@pytest.mark.parametrize("replay", ["kernel-pod"], indirect=True)
def test_files_go_into_and_out_of_a_running_pod_through_exec_streams(replay, tmp_path):
    # given a started kernel pod, whose filesystem the replay keeps in a folder
    replay.files_root = tmp_path / "pod-filesystem"
    backend = backend_for(replay, tmp_path)
    container = backend.create(kernel_request("jc-replay-kernel"))
    container.start()
    data = bytes(range(256)) * 4096  # 1 MiB of every byte value: nothing may be decoded as text on the way

    # when a variable's pickle goes in and comes back (as %%container --in/--out do)
    container.put_files("/run/jupyter-containers", {"in.pickle": data})
    back = container.get_file("/run/jupyter-containers/in.pickle")

    # then it is the same bytes, carried by `tar` in exec streams (no other way into a running pod)
    assert back == data
    assert (replay.files_root / "run/jupyter-containers/in.pickle").read_bytes() == data
    commands = [r.query["command"] for r in replay.requests if r.path.endswith("/exec")]
    size = commands[0].split()[-2]  # the archive's exact length: `head -c` ends stdin without a close signal
    assert commands[0].startswith("sh -c head -c") and int(size) > len(data)
    assert commands[1] == "tar -c -f - -C /run/jupyter-containers in.pickle"
    # and a file that is not there is a NotFoundError, not an empty archive
    with pytest.raises(NotFoundError):
        container.get_file("/run/jupyter-containers/missing.pickle")
    container.remove()


@pytest.mark.parametrize("replay", ["job-network-none"], indirect=True)
def test_a_run_without_network_is_isolated_before_its_job_exists(replay, tmp_path):
    # given a run with --network none
    backend = backend_for(replay, tmp_path)

    # when it runs to completion
    result = backend.run(kernel_request("jc-replay-offline", Resources(network=False), role="run"))

    # then the NetworkPolicy came first (the Pod never runs unisolated), then the Job, then the policy's owner
    assert result.exit_code == 0
    policies = "/apis/networking.k8s.io/v1/namespaces/ml/networkpolicies"
    assert replay.mutations() == [
        ("POST", policies),
        ("POST", JOBS),
        ("PATCH", f"{policies}/jc-replay-offline-isolated"),
        ("DELETE", f"{JOBS}/jc-replay-offline"),
    ]
    policy = replay.sent("POST", policies)[0].body
    assert policy["spec"] == {
        "podSelector": {"matchLabels": {"io.jupyter.containers.name": "jc-replay-offline"}},
        "policyTypes": ["Ingress", "Egress"],
    }
    owner = replay.sent("PATCH")[0].body["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "Job" and owner["name"] == "jc-replay-offline"
