"""A whole container kernel on a ``kind = "kubernetes"`` target, through the provisioner, as JupyterLab starts
one: built on the real engine, pushed to a real registry, its Pod created through the official client, its
channels through port-forward websockets, CurveZMQ and the HMAC key on, code executed, shut down and deleted.

What is mocked, and why: the cluster. No Kubernetes API server or kubelet can run on these machines, so
``tests/kubernetes_replay.py`` replays API answers (``tests/data/kubernetes/kernel-live.json``, written by
hand from the API reference, not recorded from a cluster), and its ``LocalKubelet`` runs the kernel a node
would run -- a real ipykernel process on this machine (no container: that would need a kubelet), with the
connection file taken from the Secret the backend sent, at the path the Pod's args name. Real: the engine
and the build, the registry and the push, the kubernetes client, the port-forward websocket protocol, the
local listeners, jupyter_client and ipykernel with CurveZMQ.
"""

from __future__ import annotations

import base64
import json
import time

import pytest

pytest.importorskip("kubernetes")

from traitlets.config import Config

from ..kubernetes_replay import LocalKubelet, ReplayServer, kubeconfig, load_exchange
from ..workspace import make_workspace

pytestmark = pytest.mark.engine

SPEC = """
[targets.cluster]
kind = "kubernetes"
context = "replay"
namespace = "ml"
registry = "{registry}"

[environments.small]
pip = ["six==1.16.0"]
apt = ["less"]
post_build = ["python -c 'import six; print(\\"six\\", six.__version__)'"]
env = {{ PYTHONHASHSEED = "0" }}

[environments.small.resources]
cpus = 1
memory = "256m"
"""


def test_a_kernel_on_a_kubernetes_target_runs_code_through_port_forwards(
    tmp_path, engine_config, plain_registry, small_image
):
    # given a project whose kubernetes target pulls from a real registry, and a replayed API server
    from jupyter_containers.kernel.kernelspec import ContainerKernelManager

    (tmp_path / "project").mkdir()
    project = make_workspace(tmp_path / "project", SPEC.format(registry=plain_registry.repository("jc")), config=None)
    kubelet = LocalKubelet()
    replay = ReplayServer(load_exchange("kernel-live")["exchanges"], kubelet=kubelet).start()
    config = Config(engine_config)
    config.KubernetesBackend.kubeconfig = str(kubeconfig(tmp_path, replay.url))
    config.KubernetesBackend.poll_interval = 0.05
    km = ContainerKernelManager(
        environment="small", spec_file=project / "containers.toml", target="cluster", config=config
    )
    try:
        # when JupyterLab's way of starting a kernel starts it
        km.start_kernel()
        client = km.client()
        client.start_channels()
        client.wait_for_ready(timeout=60)
        out: list[str] = []
        reply = client.execute_interactive(
            "import six; print(six.__version__, 6 * 7)",
            timeout=60,
            output_hook=lambda msg: out.append(msg["content"].get("text", "")),
        )

        # then the code ran and its output came back over the five forwarded channels
        assert reply["content"]["status"] == "ok"
        assert "".join(out).split()[-1] == "42"
        info = km.get_connection_info()
        assert info["ip"] == "127.0.0.1" and info["transport"] == "tcp"
        assert info["curve_publickey"] and info["key"]
        forwarded = {r.query["ports"] for r in replay.requests if r.path.endswith("/portforward")}
        assert {"50001", "50002", "50005"} <= forwarded  # shell, iopub, heartbeat: each its own forward
        # the Pod pulls the image the build pushed to the target's registry, under its content-addressed tag
        pod = replay.sent("POST", "/pods")[0].body
        tag = small_image.image.rsplit(":", 1)[1]
        assert pod["spec"]["containers"][0]["image"] == f"{plain_registry.repository('jc')}/small:{tag}"
        assert plain_registry.address in pod["spec"]["containers"][0]["image"]
        # and the kernel got its keys through the Secret only: they are in no label, annotation or arg
        secret = replay.sent("POST", "/secrets")[0].body
        delivered = json.loads(base64.b64decode(next(iter(secret["data"].values()))))
        key = info["key"].decode() if isinstance(info["key"], bytes) else info["key"]
        assert delivered["curve_secretkey"] == info["curve_secretkey"] and delivered["key"] == key
        # listening on the Pod's loopback only: port-forward enters its network namespace, nothing else can connect
        assert delivered["ip"] == "127.0.0.1"
        assert key not in json.dumps(pod) and info["curve_secretkey"] not in json.dumps(pod)

        # when a long cell is interrupted
        msg_id = client.execute("import time; time.sleep(60)")
        time.sleep(1)
        km.interrupt_kernel()
        reply = client.get_shell_msg(timeout=30)
        # then the kernel got SIGINT (an exec of `kill -2 1` in its Pod: Kubernetes has no signal API)
        assert reply["parent_header"]["msg_id"] == msg_id and reply["content"]["ename"] == "KeyboardInterrupt"
        assert (pod["metadata"]["name"], 2) in kubelet.signals
        client.stop_channels()
    finally:
        # when it shuts down
        try:
            km.shutdown_kernel(now=True)
        finally:
            replay.close()
            kubelet.close()  # the kernel process too, whatever happened

    # then its Pod was deleted (the Secret goes with it: it is owned by the Pod)
    deleted = [path for method, path in replay.mutations() if method == "DELETE" and "/pods/" in path]
    assert deleted and deleted[0].endswith(pod["metadata"]["name"])
    patch = replay.sent("PATCH", "-files")[0].body
    assert patch["metadata"]["ownerReferences"][0]["name"] == pod["metadata"]["name"]
    assert not replay.unexpected
