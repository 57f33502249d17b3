"""What the Kubernetes backend asks a cluster for: every manifest it generates, validated against the
Kubernetes OpenAPI schemas (``kubernetes-validate``, which ships them: no network, no cluster), and the
``kind = "kubernetes"`` target from containers.toml to the backend's settings.

Nothing is mocked: the manifests are built by the same functions the backend sends to the API server
(:func:`pod_manifest`, :func:`job_manifest`, ...), and the schemas are the API server's own (strict: a field
the API does not know fails too). What a cluster then does with them is checked by
``tests/unit/test_kubernetes_replay.py`` (against a replayed API) and ``scripts/k8s-check.sh`` (a real one).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

kubernetes_validate = pytest.importorskip("kubernetes_validate")

from jupyter_containers.backends.base import Mount, RunRequest, labels  # noqa: E402
from jupyter_containers.backends.kubernetes import (  # noqa: E402
    KubernetesBackend,
    isolation_policy,
    job_manifest,
    kubernetes_client,
    parse_constraints,
    pod_manifest,
    secret_manifest,
)
from jupyter_containers.errors import EngineUnavailableError, RequestError, SpecError  # noqa: E402
from jupyter_containers.spec.model import Resources  # noqa: E402
from jupyter_containers.spec.parse import load_spec  # noqa: E402
from jupyter_containers.targets import backend_settings, workspace_mode  # noqa: E402

#: Kubernetes versions checked: the oldest still common in labs, a middle one, and a recent one.
VERSIONS = ("1.27", "1.30", "1.33")
IMAGE = "registry.example.org:5000/ml/train:0123abcd"
KERNEL_ARGV = ["python", "-m", "ipykernel_launcher", "-f", "/run/jupyter-containers/kernel.json"]
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def validate(manifest: dict, version: str) -> None:
    """Raises kubernetes_validate's ValidationError naming the field when the API would refuse ``manifest``."""
    kubernetes_validate.validate(manifest, version, strict=True)


def request(**changes) -> RunRequest:
    values = {
        "image": IMAGE,
        "command": KERNEL_ARGV,
        "resources": Resources(cpus=2, memory=8 << 30, gpus=2, shm_size=2 << 30, timeout=3600, pids=512),
        "labels": labels(
            env="train", role="kernel", workspace="/home/me/project", resources='{"cpus": 2}', owner_uid="1000"
        ),
        "working_dir": "/workspace/notebooks",
        "publish": (50001, 50002, 50003, 50004, 50005),
        "environment": {"PYDEVD_DISABLE_FILE_VALIDATION": "1"},
    }
    values.update(changes)
    return RunRequest(**values)


@pytest.mark.parametrize("version", VERSIONS)
def test_a_kernel_pod_with_gpus_shm_placement_secrets_and_its_connection_file_is_a_valid_pod(version: str):
    # given a GPU kernel on tainted, labelled nodes, with a pull secret, a workspace claim and its connection file
    manifest = pod_manifest(
        request(mounts=[Mount("team-workspace", "/workspace", type="volume")]),
        name="jc0123456789-kernel-train",
        namespace="ml",
        node_selector={"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
        tolerations=[GPU_TOLERATION],
        affinity={
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 1,
                        "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
                    }
                ]
            }
        },
        image_pull_secrets=["regcred"],
        secret_files={"/run/jupyter-containers/kernel.json": "f0"},
        secret_name="jc0123456789-kernel-train-files",
    )
    # then the API server's schema accepts it
    validate(manifest, version)
    spec = manifest["spec"]
    main = spec["containers"][0]
    # and it asks for what the spec says, as requests = limits
    assert main["resources"]["limits"] == {"cpu": "2000m", "memory": str(8 << 30), "nvidia.com/gpu": "2"}
    assert main["resources"]["requests"] == main["resources"]["limits"]
    # /dev/shm is memory of the spec's size
    shm = next(v for v in spec["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": str(2 << 30)}
    # never root, no privilege, no capability, the runtime's seccomp profile, no API token
    assert main["securityContext"]["runAsNonRoot"] is True and main["securityContext"]["runAsUser"] == 1000
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert main["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    # placement and pull secrets from the target
    assert spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert spec["tolerations"] == [GPU_TOLERATION]
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert "activeDeadlineSeconds" not in spec  # a kernel lives until shut down, as on a Docker engine
    # the working folder is inside the claim, so no extra folder hides it
    assert {m["mountPath"] for m in main["volumeMounts"]} == {
        "/workspace",
        "/dev/shm",
        "/run/jupyter-containers",
        "/run/jupyter-containers/kernel.json",
    }
    # our labels: the selectable ones as labels, all of them exactly as annotations
    assert manifest["metadata"]["labels"]["io.jupyter.containers.role"] == "kernel"
    assert "io.jupyter.containers.workspace" not in manifest["metadata"]["labels"]
    assert manifest["metadata"]["annotations"]["io.jupyter.containers.workspace"] == "/home/me/project"


@pytest.mark.parametrize("version", VERSIONS)
def test_a_notebook_job_is_a_valid_job_that_runs_once_within_its_deadline(version: str):
    # given a notebook job's kernel (labelled with its job), without a workspace claim
    job_labels = {**labels(env="train", role="kernel", workspace="/w"), "io.jupyter.containers.job": "j-42"}
    manifest = job_manifest(request(labels=job_labels), name="jc0123456789-kernel-train", namespace="ml")
    # then the schema accepts it
    validate(manifest, version)
    # and it runs once, never restarted, stopped at the timeout by the Job controller
    assert manifest["spec"]["backoffLimit"] == 0
    assert manifest["spec"]["activeDeadlineSeconds"] == 3600
    template = manifest["spec"]["template"]
    assert template["spec"]["restartPolicy"] == "Never"
    assert "activeDeadlineSeconds" not in template["spec"]
    # its Pod carries the labels the backend finds it by
    assert template["metadata"]["labels"]["io.jupyter.containers.name"] == "jc0123456789-kernel-train"
    # the backend gives a notebook job's deadline a grace (the runner's own timeout comes first), not a run's
    backend = KubernetesBackend(namespace="ml")
    assert backend.manifest(request(labels=job_labels), "n", "job")["spec"]["activeDeadlineSeconds"] == 3630
    run_labels = labels(env="train", role="run", workspace="/w")
    assert backend.manifest(request(labels=run_labels), "n", "job")["spec"]["activeDeadlineSeconds"] == 3600
    # and /workspace is an empty folder the Pod's user can write
    mounts = {m["mountPath"]: m["name"] for m in template["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["/workspace"] == "workdir"


@pytest.mark.parametrize("version", VERSIONS)
def test_the_secret_and_network_policy_that_go_with_a_pod_are_valid(version: str):
    owned = labels(name="jc0123456789-kernel-train")
    validate(secret_manifest("jc0123456789-kernel-train-files", "ml", {"f0": b'{"key": "x"}'}, owned), version)
    validate(isolation_policy("jc0123456789-run-train", "ml", owned), version)


def test_the_validator_refuses_what_the_api_server_would_refuse():
    # given a Pod whose uid is a string and that has a field the API does not know
    manifest = pod_manifest(request(), name="jc0123456789-kernel-train", namespace="ml")
    manifest["spec"]["containers"][0]["securityContext"]["runAsUser"] = "1000"
    # then validation fails (so the checks above can fail too)
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(manifest, "1.30")
    manifest = pod_manifest(request(), name="jc0123456789-kernel-train", namespace="ml")
    manifest["spec"]["shmSize"] = "1g"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(manifest, "1.30")


def test_swarm_style_constraints_become_a_node_selector_and_affinity():
    selector, expressions = parse_constraints(["node.labels.gpu==a100", "node.labels.zone!=b", "node.hostname==n1"])
    assert selector == {"gpu": "a100", "kubernetes.io/hostname": "n1"}
    assert expressions == [{"key": "zone", "operator": "NotIn", "values": ["b"]}]
    with pytest.raises(RequestError, match="node.labels.KEY==VALUE"):
        parse_constraints(["engine.labels.x==y"])


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"resources": Resources(gpus="all")}, "give a count"),
        ({"resources": Resources(gpus=("0", "2"))}, "give a count"),
        ({"mounts": [Mount(Path("/home/me/data"), "/data")]}, "cannot bind-mount the host folder /home/me/data"),
        ({"resources": Resources(memory=1 << 30, memory_swap=2 << 30)}, "--memory-swap cannot be set"),
    ],
)
def test_what_kubernetes_cannot_express_is_refused_naming_it(changes: dict, words: str):
    with pytest.raises(RequestError, match=words):
        pod_manifest(request(**changes), name="jc0123456789-kernel-train", namespace="ml")


def write_spec(folder: Path, text: str) -> Path:
    path = folder / "containers.toml"
    path.write_text(text + '\n[environments.train]\npip = ["six"]\n')
    return path


def test_a_kubernetes_target_from_the_spec_file_configures_the_backend(tmp_path: Path):
    # given a kubernetes target built on a Docker target
    path = write_spec(
        tmp_path,
        '[targets.builder]\nengine = "ssh://build-box"\n'
        '[targets.cluster]\nkind = "kubernetes"\ncontext = "lab"\nnamespace = "ml"\n'
        'registry = "registry.example.org:5000/ml"\nbuilder = "builder"\n'
        'node_selector = { "nvidia.com/gpu.product" = "A100" }\n'
        'tolerations = [{ key = "nvidia.com/gpu", operator = "Exists", effect = "NoSchedule" }]\n'
        'image_pull_secrets = ["regcred"]\ngpu_resource = "nvidia.com/mig-1g.10gb"\nworkspace_claim = "team-ws"\n',
    )
    spec = load_spec(path)
    target = spec.targets["cluster"]
    # when the backend is made from it
    settings = backend_settings(target, spec.targets)
    backend = KubernetesBackend(**settings)
    # then it has the target's settings, builds on the builder target, and mounts the claim
    assert backend.context == "lab" and backend.namespace == "ml"
    assert backend.builder_settings["base_url"] == "ssh://build-box"
    assert workspace_mode(target, backend.address) == "claim"
    manifest = backend.manifest(request(resources=Resources(gpus=1)), "jc0123456789-kernel-train", "pod")
    validate(manifest, "1.30")
    assert manifest["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/mig-1g.10gb": "1"}
    assert manifest["spec"]["tolerations"] == [GPU_TOLERATION]
    assert manifest["spec"]["imagePullSecrets"] == [{"name": "regcred"}]


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ('[targets.a]\nkind = "kubernetes"\nengine = "tcp://h:1"\n', "targets.a.engine", "kubeconfig context"),
        ('[targets.a]\nkind = "kubernetes"\nworkspace = "sync"\n', "targets.a.workspace", "workspace_claim"),
        ('[targets.a]\nengine = "ssh://h"\nnamespace = "ml"\n', "targets.a.namespace", 'kind = "kubernetes"'),
        ('[targets.a]\nkind = "kubernetes"\nnamespace = "ML_bad"\n', "targets.a.namespace", "namespace"),
        ('[targets.a]\nkind = "swarmy"\n', "targets.a.kind", "kubernetes"),
    ],
)
def test_bad_kubernetes_targets_are_named(tmp_path: Path, text: str, key: str, words: str):
    with pytest.raises(SpecError) as caught:
        load_spec(write_spec(tmp_path, text))
    assert caught.value.key == key and words in str(caught.value)


def test_a_builder_that_is_no_docker_target_is_named(tmp_path: Path):
    path = write_spec(tmp_path, '[targets.a]\nkind = "kubernetes"\nbuilder = "nope"\n')
    spec = load_spec(path)
    with pytest.raises(SpecError, match="the builder 'nope' of target 'a' is no Docker target"):
        backend_settings(spec.targets["a"], spec.targets)


def test_the_client_is_imported_only_when_a_kubernetes_target_is_used():
    # given a fresh interpreter that imports the backend module and builds manifests
    code = (
        "import sys, json\n"
        "from jupyter_containers.backends.kubernetes import pod_manifest\n"
        "from jupyter_containers.backends.base import RunRequest\n"
        "pod_manifest(RunRequest(image='x'), name='n', namespace='ml')\n"
        "print(json.dumps('kubernetes' in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) is False


def test_a_missing_client_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "kubernetes", None)  # as if it were not installed
    with pytest.raises(EngineUnavailableError, match=r"pip install 'jupyter-containers\[kubernetes\]'"):
        kubernetes_client()
