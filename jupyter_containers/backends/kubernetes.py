"""The Kubernetes backend: kernels and sessions as Pods, notebook jobs and runs as Jobs (batch/v1).

A ``[targets.NAME]`` with ``kind = "kubernetes"`` (docs/scale-out.md). Through the official ``kubernetes``
client, imported only when this backend is used (``pip install jupyter-containers[kubernetes]``).

- **Images** are built on a Docker engine (this machine's, or the target's ``builder`` target) exactly as for
  a Docker target, then pushed to the target's ``registry`` under their content-addressed tag before a Pod
  or Job uses them: the cluster's nodes pull from there, and an image already pushed costs one lookup.
- **What a run asks for** becomes the Pod spec: ``resources.requests``/``limits`` (cpu, memory, the GPU
  resource of the target's device plugin), ``/dev/shm`` as an ``emptyDir`` of medium Memory, nodeSelector,
  tolerations and affinity, imagePullSecrets, a restricted securityContext (uid 1000, no privilege
  escalation, every capability dropped, seccomp RuntimeDefault), ``activeDeadlineSeconds`` for timeouts, our
  labels (and, where a value is no valid label value, an annotation). :func:`pod_manifest` and
  :func:`job_manifest` build them without touching a cluster, so tests validate them against the schemas.
- **A kernel's channels** go through the API server, never a Service: :meth:`KubernetesContainer.published_ports`
  opens a loopback listener on this machine per kernel port, and each connection to it is carried by its own
  port-forward websocket (``pods/portforward``). The kernel still speaks CurveZMQ with the HMAC key set, as on
  every remote target; its connection file reaches the Pod as a Secret (owned by the Pod, so it goes with it).
- **States** come from the Pod and Job status: OOMKilled (the container's terminated reason) and
  DeadlineExceeded (the Job's condition, or the Pod's reason) give the same errors and exit codes as on a
  Docker engine; an image the nodes cannot pull, or a Pod no node can hold (``Unschedulable`` for longer than
  ``unschedulable_timeout``), fails the start with a message saying why instead of waiting forever.
"""

from __future__ import annotations

import io
import json
import math
import re
import secrets
import select
import socket
import tarfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import IO, Any

from traitlets import Dict, Float, Instance, List, Unicode

from ..errors import (
    ConflictError,
    ContainersError,
    EngineRefusedError,
    EngineUnavailableError,
    GpuUnavailableError,
    NotFoundError,
    OutOfMemoryError,
    RequestError,
    RunTimeoutError,
)
from ..images.dockerfile import WORKSPACE
from ..spec.model import Resources
from ..units import format_duration, format_size, parse_size
from .base import (
    LABEL_PREFIX,
    MANAGED_LABEL,
    Container,
    ContainerBackend,
    ContainerInfo,
    ContainerState,
    EngineInfo,
    ImageInfo,
    NodeInfo,
    OutputCallback,
    ProgressCallback,
    RunRequest,
    RunResult,
    Usage,
)

INSTALL_HINT = "pip install 'jupyter-containers[kubernetes]'"
#: The one container of each of our Pods.
MAIN = "main"
#: Our label naming the Pod or Job an object belongs to (every Pod we make carries it: pods of a Job too).
NAME_LABEL = f"{LABEL_PREFIX}.name"
#: Whether the object behind a container id is a bare Pod or a Job.
OBJECT_LABEL = f"{LABEL_PREFIX}.k8s-object"
#: The uid our images' user has (docs/security.md): Pods run as it, never as root.
CONTAINER_UID = 1000
_LABEL_VALUE = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$")
_DNS_LABEL_BAD = re.compile(r"[^a-z0-9-]+")
_PULL_FAILURES = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable")
_CONFIG_FAILURES = ("CreateContainerConfigError", "CreateContainerError", "RunContainerError")
#: Roles whose containers run to completion: they become Jobs (kernels and sessions are bare Pods).
_JOB_ROLES = ("run",)
#: Probes of the builder (a base image's Python, a lock): they run where the image is, on the build engine.
_BUILD_ROLES = ("python-probe", "lock-probe")


def kubernetes_client() -> Any:
    """The ``kubernetes`` package, imported here (only when a Kubernetes target is used).

    Raises:
        EngineUnavailableError: it is not installed (the message says how to install it).
    """
    try:
        import kubernetes
    except ImportError:
        raise EngineUnavailableError(
            f"a Kubernetes target needs the official kubernetes client, which is not installed: {INSTALL_HINT}"
        ) from None
    return kubernetes


# ---------------------------------------------------------------------- manifests (no cluster needed)
def label_value_ok(value: str) -> bool:
    """Whether ``value`` is a valid Kubernetes label value (63 characters of ``[A-Za-z0-9._-]``, alphanumeric ends)."""
    return bool(_LABEL_VALUE.match(value))


def split_labels(values: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Our labels as (Kubernetes labels, annotations): every one is an annotation (exact, any length), and those
    whose key and value are valid label syntax are labels too, so the API server can select on them."""
    annotations = {str(k): str(v) for k, v in values.items()}
    kept = {k: v for k, v in annotations.items() if len(k) <= 63 and label_value_ok(k) and label_value_ok(v)}
    return kept, annotations


def object_name(role: str, env: str | None, requested: str | None = None) -> str:
    """A DNS-1123 name (≤ 63 characters): ``jc`` + 10 random hex digits (the short id) + role + environment."""
    if requested:
        cleaned = _DNS_LABEL_BAD.sub("-", requested.lower()).strip("-")[:63].rstrip("-")
        if cleaned:
            return cleaned
    parts = [f"jc{secrets.token_hex(5)}", role, env or ""]
    name = _DNS_LABEL_BAD.sub("-", "-".join(p for p in parts if p).lower())
    return name[:52].rstrip("-")  # room for the Job controller's "-xxxxx" pod suffix


def cpu_quantity(cpus: float) -> str:
    """``1.5`` → ``"1500m"``: millicores, the unit the API server writes back."""
    return f"{max(1, round(cpus * 1000))}m"


def gpu_count(resources: Resources, gpu_resource: str) -> int:
    """How many of ``gpu_resource`` a run asks for.

    Raises:
        RequestError: ``gpus = "all"`` or device ids: a device plugin hands out a count, the scheduler picks
            which devices (select the kind of GPU with a node selector instead).
    """
    gpus = resources.gpus
    if gpus is None or gpus == 0:
        return 0
    if isinstance(gpus, int):
        return gpus
    shown = "all" if gpus == "all" else ",".join(gpus)
    raise RequestError(
        f"gpus = {shown!r} cannot be asked of a Kubernetes cluster: its device plugin hands out a number of "
        f"{gpu_resource} and chooses the devices itself; give a count (--gpus 2), and pick the kind of GPU with "
        "node_selector (e.g. nvidia.com/gpu.product) on the target"
    )


def parse_constraints(constraints: Sequence[str]) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Swarm-style placement constraints as (nodeSelector, node affinity terms).

    ``node.labels.gpu==a100`` → nodeSelector ``gpu: a100``; ``node.labels.gpu!=k80`` → a ``NotIn``
    expression; ``node.hostname==n1`` → ``kubernetes.io/hostname``. The same ``--constraint`` works on a
    swarm and a cluster.

    Raises:
        RequestError: a constraint of another form (naming it).
    """
    selector: dict[str, str] = {}
    expressions: list[dict[str, Any]] = []
    for text in constraints:
        match = re.match(r"^\s*(node\.labels\.[^=!\s]+|node\.hostname)\s*(==|!=)\s*(\S+)\s*$", text)
        if not match:
            raise RequestError(
                f"constraint {text!r} is not understood on a Kubernetes target: use node.labels.KEY==VALUE, "
                "node.labels.KEY!=VALUE or node.hostname==NAME"
            )
        key, op, value = match.groups()
        key = "kubernetes.io/hostname" if key == "node.hostname" else key[len("node.labels.") :]
        if op == "==":
            selector[key] = value
        else:
            expressions.append({"key": key, "operator": "NotIn", "values": [value]})
    return selector, expressions


def pod_spec(
    request: RunRequest,
    *,
    name: str,
    gpu_resource: str = "nvidia.com/gpu",
    node_selector: Mapping[str, str] | None = None,
    tolerations: Sequence[Mapping[str, Any]] = (),
    affinity: Mapping[str, Any] | None = None,
    image_pull_secrets: Sequence[str] = (),
    secret_files: Mapping[str, str] | None = None,
    secret_name: str | None = None,
) -> dict[str, Any]:
    """The PodSpec (dict, as the API takes it) of a request: limits, placement, no privileges.

    ``secret_files`` ``{path in the container: key}`` are files of the Secret ``secret_name`` mounted one by one
    (``subPath``) into writable in-memory folders (a kernel's connection file into /run/jupyter-containers).

    Raises:
        RequestError: what Kubernetes cannot express (a host folder mount, GPU device ids, --memory-swap).
    """
    r = request.resources
    env = {"HOME": "/home/jovyan", **request.environment}
    container: dict[str, Any] = {
        "name": MAIN,
        "image": request.image,
        "imagePullPolicy": "IfNotPresent",
        "env": [{"name": k, "value": str(v)} for k, v in env.items()],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": CONTAINER_UID,
            "runAsGroup": CONTAINER_UID,
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if request.entrypoint is not None:
        container["command"] = list(request.entrypoint)  # Docker's ENTRYPOINT is Kubernetes' command…
    if request.command:
        container["args"] = list(request.command)  # …and CMD its args
    if request.working_dir:
        container["workingDir"] = request.working_dir
    if request.publish:
        container["ports"] = [{"containerPort": int(p), "protocol": "TCP"} for p in request.publish]
    limits: dict[str, str] = {}
    if r.cpus is not None:
        limits["cpu"] = cpu_quantity(r.cpus)
    if r.memory is not None:
        limits["memory"] = str(r.memory)
    if r.memory_swap is not None and r.memory_swap not in (r.memory, -1):
        raise RequestError(
            "--memory-swap cannot be set on a Kubernetes target: its nodes run Pods without swap (the memory "
            "limit is the whole limit); drop --memory-swap"
        )
    gpus = gpu_count(r, gpu_resource)
    if gpus:
        limits[gpu_resource] = str(gpus)
    if limits:
        # Requests equal to limits: the Pod is placed only where all of it fits, and keeps it (Guaranteed
        # QoS when cpu and memory are both set), as a Docker engine's hard limits behave.
        container["resources"] = {"limits": dict(limits), "requests": dict(limits)}
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    for index, mount in enumerate(request.mounts):
        if mount.type != "volume":
            raise RequestError(
                f"a Kubernetes target cannot bind-mount the host folder {mount.source} at {mount.target}: the "
                "Pod runs on a node of the cluster; use a PersistentVolumeClaim (workspace_claim on the target)"
            )
        volumes.append({"name": f"v{index}", "persistentVolumeClaim": {"claimName": str(mount.source)}})
        mounts.append({"name": f"v{index}", "mountPath": mount.target, "readOnly": bool(mount.read_only)})
    workdir = request.working_dir
    if workdir and not any(
        workdir == m["mountPath"] or workdir.startswith(m["mountPath"].rstrip("/") + "/") for m in mounts
    ):
        # A writable workspace (uid 1000 owns it through fsGroup) that goes with the Pod.
        top = WORKSPACE if workdir == WORKSPACE or workdir.startswith(WORKSPACE + "/") else workdir
        volumes.append({"name": "workdir", "emptyDir": {}})
        mounts.append({"name": "workdir", "mountPath": top})
    if r.shm_size is not None:
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": str(r.shm_size)}})
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    if secret_files:
        folders = sorted({path.rsplit("/", 1)[0] or "/" for path in secret_files})
        for index, folder in enumerate(folders):
            volumes.append({"name": f"run{index}", "emptyDir": {"medium": "Memory"}})
            mounts.append({"name": f"run{index}", "mountPath": folder})
        volumes.append(
            {
                "name": "files",
                "secret": {
                    "secretName": secret_name or f"{name}-files",
                    # Read by uid 1000 only (owner 0, group fsGroup 1000 given read by the kubelet).
                    "defaultMode": 0o440,
                    "items": [{"key": key, "path": key} for key in sorted(secret_files.values())],
                },
            }
        )
        for path, key in sorted(secret_files.items()):
            mounts.append({"name": "files", "mountPath": path, "subPath": key, "readOnly": True})
    if mounts:
        container["volumeMounts"] = mounts
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        # A kernel gets no credentials for the API server, and no environment variables naming Services.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": CONTAINER_UID,
            "runAsGroup": CONTAINER_UID,
            "fsGroup": CONTAINER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if volumes:
        spec["volumes"] = volumes
    constraint_selector, expressions = parse_constraints(list(r.constraints or ()))
    selector = {**(node_selector or {}), **constraint_selector}
    if selector:
        spec["nodeSelector"] = selector
    if tolerations:
        spec["tolerations"] = [dict(t) for t in tolerations]
    merged_affinity = json.loads(json.dumps(dict(affinity or {})))
    if expressions:
        node = merged_affinity.setdefault("nodeAffinity", {})
        required = node.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {"nodeSelectorTerms": []})
        terms = required.setdefault("nodeSelectorTerms", [])
        if not terms:
            terms.append({"matchExpressions": []})
        for term in terms:  # terms are ORed: every one of them must exclude the nodes
            term.setdefault("matchExpressions", []).extend(expressions)
    if merged_affinity:
        spec["affinity"] = merged_affinity
    if image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in image_pull_secrets]
    return spec


def _metadata(request: RunRequest, name: str, namespace: str, kind: str) -> dict[str, Any]:
    values = {**request.labels, MANAGED_LABEL: "true", NAME_LABEL: name, OBJECT_LABEL: kind}
    kept, annotations = split_labels(values)
    return {"name": name, "namespace": namespace, "labels": kept, "annotations": annotations}


def pod_manifest(request: RunRequest, *, name: str, namespace: str, **options: Any) -> dict[str, Any]:
    """A v1 Pod for a kernel or a ``%%container`` session (options: those of :func:`pod_spec`).

    No deadline: an interactive kernel lives until it is shut down, as on a Docker engine (``timeout`` limits
    runs and notebook jobs)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _metadata(request, name, namespace, "pod"),
        "spec": pod_spec(request, name=name, **options),
    }


def job_manifest(
    request: RunRequest, *, name: str, namespace: str, deadline_grace: float = 0, **options: Any
) -> dict[str, Any]:
    """A batch/v1 Job that runs the request once (no retries) within its timeout (``activeDeadlineSeconds``,
    plus ``deadline_grace``: a notebook job's runner stops the kernel at the timeout itself, with its own
    message, and the deadline is the cluster's backstop).

    Its Pod carries the same labels; the Job controller makes the Job its owner, so deleting the Job (with
    propagation) deletes its Pod.
    """
    metadata = _metadata(request, name, namespace, "job")
    spec = pod_spec(request, name=name, **options)
    timeout = request.resources.timeout
    deadline = None if timeout is None else max(1, math.ceil(timeout + deadline_grace))
    job_spec: dict[str, Any] = {
        "backoffLimit": 0,
        "completions": 1,
        "parallelism": 1,
        "template": {
            "metadata": {"labels": dict(metadata["labels"]), "annotations": dict(metadata["annotations"])},
            "spec": spec,
        },
    }
    if deadline is not None:
        job_spec["activeDeadlineSeconds"] = deadline
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}


def secret_manifest(name: str, namespace: str, files: Mapping[str, bytes], labels: Mapping[str, str]) -> dict:
    """An Opaque Secret holding files for a Pod (a kernel's connection file, with its keys)."""
    import base64

    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "data": {key: base64.b64encode(data).decode() for key, data in files.items()},
    }


def isolation_policy(name: str, namespace: str, labels: Mapping[str, str]) -> dict[str, Any]:
    """A NetworkPolicy with no rule for the Pod named ``name``: ``--network none`` (no traffic in or out; the
    port-forward of its channels goes through the kubelet, not the Pod network)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"{name}-isolated", "namespace": namespace, "labels": dict(labels)},
        "spec": {"podSelector": {"matchLabels": {NAME_LABEL: name}}, "policyTypes": ["Ingress", "Egress"]},
    }


def owner_reference(obj: Mapping[str, Any]) -> dict[str, Any]:
    """An ownerReference to a created Pod or Job (as the API returned it): what it owns goes with it."""
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "blockOwnerDeletion": False,
    }


# ---------------------------------------------------------------------- statuses
def container_status(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == MAIN:
            return status
    return {}


def pod_state(pod: Mapping[str, Any]) -> ContainerState:
    """A Pod's status in Docker's words: created (Pending), running, exited (with code, OOM, deadline)."""
    status = pod.get("status") or {}
    phase = status.get("phase") or "Pending"
    main = container_status(pod)
    terminated = (main.get("state") or {}).get("terminated") or (main.get("lastState") or {}).get("terminated")
    if status.get("reason") == "DeadlineExceeded":
        return ContainerState("exited", exit_code=124, timed_out=True)
    if terminated:
        return ContainerState(
            "exited", exit_code=int(terminated.get("exitCode", -1)), oom_killed=terminated.get("reason") == "OOMKilled"
        )
    if phase == "Running":
        return ContainerState("running")
    if phase == "Succeeded":
        return ContainerState("exited", exit_code=0)
    if phase == "Failed":
        return ContainerState("exited", exit_code=-1)
    waiting = (main.get("state") or {}).get("waiting") or {}
    if waiting.get("reason") in _PULL_FAILURES + _CONFIG_FAILURES:
        return ContainerState("dead", exit_code=-1)
    return ContainerState("created")


def job_condition(job: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return condition
    return None


def job_state(job: Mapping[str, Any], pod: Mapping[str, Any] | None) -> ContainerState:
    """A Job's status: its Pod's, except that the Job's own DeadlineExceeded wins (its Pod is killed then)."""
    failed = job_condition(job, "Failed")
    if failed is not None and failed.get("reason") == "DeadlineExceeded":
        return ContainerState("exited", exit_code=124, timed_out=True)
    if pod is not None:
        state = pod_state(pod)
        if state.status != "created" or (failed is None and job_condition(job, "Complete") is None):
            return state
    if job_condition(job, "Complete") is not None:
        return ContainerState("exited", exit_code=0)
    if failed is not None:
        return ContainerState("exited", exit_code=-1)
    return ContainerState("created")


def scheduling_problem(pod: Mapping[str, Any]) -> str | None:
    """The scheduler's message when the Pod cannot be placed (``0/3 nodes are available: 3 Insufficient
    nvidia.com/gpu``), else None."""
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            if condition.get("reason") == "Unschedulable":
                return str(condition.get("message") or "no node can hold it")
    return None


def start_problem(pod: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(reason, message)`` when the Pod's container cannot start (image pull, config), else None."""
    waiting = (container_status(pod).get("state") or {}).get("waiting") or {}
    if waiting.get("reason") in _PULL_FAILURES + _CONFIG_FAILURES:
        return str(waiting["reason"]), str(waiting.get("message") or "")
    return None


def out_of_memory_message(limit: int | None, exit_code: int, *, what: str = "the container") -> str:
    """The words a Docker engine's run uses for an OOM kill (backends/docker.py), for the same error here."""
    return (
        f"{what} ran out of its {format_size(limit) if limit else 'memory'} memory limit and was killed "
        f"(exit code {exit_code}); raise --memory (or resources.memory in the spec)"
    )


def timeout_message(timeout: float | None) -> str:
    return (
        f"the command ran longer than its {format_duration(timeout or 0)} timeout and was killed; raise --timeout "
        "(or resources.timeout in the spec) if it needs longer"
    )


# ---------------------------------------------------------------------- the container handle
class KubernetesContainer(Container):
    """One Pod, or one Job and its Pod. ``id`` is the object's name (``jc<10 hex>-role-env``).

    Created by :meth:`KubernetesBackend.create` as a manifest only: files put before :meth:`start` (a kernel's
    connection file) go into a Secret created with it, since nothing can be copied into a Pod before it runs.
    """

    def __init__(
        self,
        backend: KubernetesBackend,
        name: str,
        kind: str,
        *,
        manifest: dict[str, Any] | None = None,
        request: RunRequest | None = None,
    ):
        self.backend = backend
        self.id = name
        self.kind = kind
        self.manifest = manifest
        self.request = request
        self.resources = request.resources if request is not None else Resources()
        #: Files to deliver at start: {path in the container: content}.
        self.pending_files: dict[str, bytes] = {}
        self._pod_name: str | None = name if kind == "pod" else None
        self._started = manifest is None
        #: The resourceVersion of the Pod and the Job as last read: a watch from there sees only what changed.
        self.versions: dict[str, str | None] = {}

    # ------------------------------------------------------------------ lookups
    @property
    def core(self) -> Any:
        return self.backend.core

    def pod_name(self, *, wait: float = 0.0) -> str | None:
        """The Pod's name (a Job's Pod is named by its controller), None while there is none."""
        if self._pod_name is not None:
            return self._pod_name
        deadline = time.monotonic() + wait
        while True:
            pods = self.backend._call(
                f"listing the pods of job {self.id}",
                self.core.list_namespaced_pod,
                self.backend.namespace,
                label_selector=f"{NAME_LABEL}={self.id}",
            )
            items = sorted(pods.items, key=lambda p: p.metadata.creation_timestamp or datetime.min)
            if items:
                self._pod_name = items[-1].metadata.name
                return self._pod_name
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.5)

    def _read_pod(self) -> dict[str, Any] | None:
        name = self.pod_name()
        if name is None:
            return None
        try:
            pod = self.backend._dict(
                self.backend._call(f"reading pod {name}", self.core.read_namespaced_pod, name, self.backend.namespace)
            )
        except NotFoundError:
            return None
        self.versions["pod"] = (pod.get("metadata") or {}).get("resourceVersion")
        return pod

    def _read_job(self) -> dict[str, Any] | None:
        try:
            job = self.backend._dict(
                self.backend._call(
                    f"reading job {self.id}", self.backend.batch.read_namespaced_job, self.id, self.backend.namespace
                )
            )
        except NotFoundError:
            return None
        self.versions["job"] = (job.get("metadata") or {}).get("resourceVersion")
        return job

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._started:
            return
        self._started = True
        backend = self.backend
        ns = backend.namespace
        manifest = self.manifest or {}
        labels = {MANAGED_LABEL: "true", NAME_LABEL: self.id}
        # What goes with the Pod is made first, so that the Pod never runs without it (its connection file;
        # the isolation of --network none), then given to the Pod: the garbage collector removes it with it.
        companions: list[tuple[str, Any, Any]] = []  # (name, delete, patch)
        try:
            if self.pending_files:
                files = {key: self.pending_files[path] for path, key in self._secret_keys().items()}
                secret = secret_manifest(f"{self.id}-files", ns, files, labels)
                backend._call(f"creating secret {self.id}-files", self.core.create_namespaced_secret, ns, secret)
                companions.append(
                    (f"{self.id}-files", self.core.delete_namespaced_secret, self.core.patch_namespaced_secret)
                )
            if self.resources.network is False:
                policy = isolation_policy(self.id, ns, labels)
                backend._call(
                    f"isolating {self.id} from the network",
                    backend.networking.create_namespaced_network_policy,
                    ns,
                    policy,
                )
                companions.append(
                    (
                        policy["metadata"]["name"],
                        backend.networking.delete_namespaced_network_policy,
                        backend.networking.patch_namespaced_network_policy,
                    )
                )
            create = backend.batch.create_namespaced_job if self.kind == "job" else self.core.create_namespaced_pod
            created = backend._call(f"creating {self.kind} {self.id}", create, ns, manifest, resources=self.resources)
        except BaseException:
            for name, delete, _ in companions:
                backend._delete_quietly(delete, name)
            raise
        try:
            owner = owner_reference(backend._dict(created))
            for name, _, patch in companions:
                backend._call(
                    f"giving {name} to {self.id}", patch, name, ns, {"metadata": {"ownerReferences": [owner]}}
                )
        except BaseException:
            self.remove()
            for name, delete, _ in companions:
                backend._delete_quietly(delete, name)
            raise
        self.pending_files = {}
        try:
            backend.wait_until_started(self)
        except BaseException:
            self.remove()
            raise

    def _secret_keys(self) -> dict[str, str]:
        return {path: f"f{index}" for index, path in enumerate(sorted(self.pending_files))}

    def wait(self, timeout: float | None = None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            state = self.state()
            if not state.running:
                return state.exit_code if state.exit_code is not None else -1
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            self.backend.watch_for_change(self, min(left, 30.0) if left is not None else 30.0)

    def kill(self, signum: int = 9) -> None:
        if int(signum) == 9:
            self.remove()
            return
        name = self.pod_name()
        if name is None:
            return
        # No signal API in Kubernetes: `kill` in the container (the kernel is PID 1 and handles SIGINT).
        try:
            self.backend.exec(name, ["kill", f"-{int(signum)}", "1"])
        except (NotFoundError, EngineRefusedError):
            return

    def state(self) -> ContainerState:
        if self.kind == "job":
            job = self._read_job()
            if job is None:
                return ContainerState("removed", exit_code=-1)
            return job_state(job, self._read_pod())
        pod = self._read_pod()
        if pod is None:
            return ContainerState("removed", exit_code=-1)
        return pod_state(pod)

    def logs(self, *, tail: int | None = None) -> str:
        name = self.pod_name()
        if name is None:
            return ""
        kwargs: dict[str, Any] = {"container": MAIN}
        if tail is not None:
            kwargs["tail_lines"] = int(tail)
        try:
            text = self.backend._call(
                f"reading the log of pod {name}",
                self.core.read_namespaced_pod_log,
                name,
                self.backend.namespace,
                **kwargs,
            )
        except (NotFoundError, EngineRefusedError):
            return ""  # not started yet (400 "waiting to start"), or gone
        return text if isinstance(text, str) else bytes(text).decode("utf-8", "replace")

    def remove(self) -> None:
        self.backend.close_forwards(self.id)
        self.backend.remove_container(self.id)

    # ------------------------------------------------------------------ files
    def put_files(self, directory: str, files: Mapping[str, bytes]) -> None:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for rel, data in files.items():
                info = tarfile.TarInfo(rel)
                info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
                tar.addfile(info, io.BytesIO(data))
        self.put_archive(directory, buf.getvalue())

    def put_archive(self, directory: str, data: bytes | IO[bytes]) -> None:
        raw = data if isinstance(data, bytes) else data.read()
        if not self._started:
            # Before start: the files become a Secret mounted file by file (small files: a connection file).
            with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
                for member in tar.getmembers():
                    if member.isfile():
                        extracted = tar.extractfile(member)
                        path = f"{directory.rstrip('/')}/{member.name.lstrip('./')}"
                        self.pending_files[path] = extracted.read() if extracted is not None else b""
            if sum(len(v) for v in self.pending_files.values()) > 512 * 1024:
                raise RequestError(
                    "files copied into a Kubernetes pod before it starts travel in a Secret (at most 1 MiB); "
                    "put larger files in the workspace claim"
                )
            self._rebuild_manifest()
            return
        name = self.pod_name()
        if name is None:
            raise NotFoundError(f"container {self.id} has no running pod to copy files into")
        # `kubectl cp`'s way: tar in the container, reading exactly the archive's bytes from stdin.
        self.backend.exec(name, ["sh", "-c", 'head -c "$0" | tar -x -f - -C "$1"', str(len(raw)), directory], stdin=raw)

    def _rebuild_manifest(self) -> None:
        assert self.request is not None and self.manifest is not None
        self.manifest = self.backend.manifest(
            self.request, self.id, self.kind, secret_files=self._secret_keys() if self.pending_files else None
        )

    def get_archive(self, path: str) -> Iterator[bytes]:
        name = self.pod_name()
        if name is None:
            raise NotFoundError(f"container {self.id} has no pod to read {path} from")
        parent, _, base = path.rstrip("/").rpartition("/")
        try:
            out = self.backend.exec(name, ["tar", "-c", "-f", "-", "-C", parent or "/", base])
        except EngineRefusedError as exc:
            if "No such file" in str(exc) or "Cannot stat" in str(exc):
                raise NotFoundError(f"no {path} in container {self.id}") from None
            raise
        if not out:
            raise NotFoundError(f"no {path} in container {self.id}")
        yield out

    def get_file(self, path: str) -> bytes:
        data = b"".join(self.get_archive(path))
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            member = next((m for m in tar.getmembers() if m.isfile()), None)
            if member is None:
                raise NotFoundError(f"{path} in container {self.id} is not a file")
            extracted = tar.extractfile(member)
            return extracted.read() if extracted is not None else b""

    def published_ports(self) -> dict[int, int]:
        """``{container port: local port}``: a loopback listener here for each port the request published,
        each connection carried through the API server's port-forward."""
        name = self.pod_name(wait=10.0)
        if name is None:
            raise NotFoundError(f"container {self.id} has no pod to forward ports to")
        ports = self.request.publish if self.request is not None else ()
        return {int(port): self.backend.forward(self.id, name, int(port)) for port in ports}


# ---------------------------------------------------------------------- port forwarding
class PortForwarder:
    """A listener on 127.0.0.1 whose every connection is carried to ``port`` of a Pod by a port-forward
    websocket of its own (``connect_get_namespaced_pod_portforward``), through the API server: a kernel's
    ZMQ sockets connect here as if the kernel were local, and nothing of the Pod is exposed outside the
    cluster. The websocket is authenticated and encrypted as every API call is (the kubeconfig's TLS)."""

    def __init__(self, backend: KubernetesBackend, pod: str, port: int):
        self.backend = backend
        self.pod = pod
        self.port = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.local_port = int(self.listener.getsockname()[1])
        self._closed = threading.Event()
        self._connections: list[socket.socket] = []
        self._carriers: list[threading.Thread] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name=f"k8s-forward {pod}:{port}", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            carrier = threading.Thread(target=self._carry, args=(conn,), daemon=True)
            with self._lock:
                self._carriers = [t for t in self._carriers if t.is_alive()] + [carrier]
            carrier.start()

    def _carry(self, local: socket.socket) -> None:
        from kubernetes.stream import portforward

        with self._lock:
            self._connections.append(local)
        forward = None
        try:
            if self._closed.is_set():
                return  # accepted while closing: no new websocket to a Pod about to go
            forward = portforward(
                self.backend.websocket_core().connect_get_namespaced_pod_portforward,
                self.pod,
                self.backend.namespace,
                ports=str(self.port),
            )
            remote = forward.socket(self.port)
            remote.setblocking(True)
            pump(local, remote)
            error = forward.error(self.port)
            if error:
                self.backend.log.warning("port-forward to %s:%s: %s", self.pod, self.port, error)
        except Exception as exc:  # noqa: BLE001 - one broken connection; ZMQ reconnects on its own
            self.backend.log.debug("port-forward to %s:%s failed: %s", self.pod, self.port, exc)
        finally:
            for sock in (local, forward.socket(self.port) if forward is not None else None):
                if sock is not None:
                    try:
                        sock.close()
                    except OSError:
                        pass
            # The client's proxy thread closes the websocket once its side is closed: wait for it, so that the
            # Pod is deleted after (a Pod that goes first resets the connection under that thread).
            deadline = time.monotonic() + 2
            while forward is not None and forward.connected and time.monotonic() < deadline:
                time.sleep(0.02)
            with self._lock:
                if local in self._connections:
                    self._connections.remove(local)

    def close(self) -> None:
        self._closed.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked in its thread (Linux)
        except OSError:
            pass
        try:
            self.listener.close()
        except OSError:
            pass
        with self._lock:
            for conn in self._connections:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            carriers = list(self._carriers)
        deadline = time.monotonic() + 3
        for carrier in carriers:  # each closes its websocket (see _carry)
            carrier.join(max(0.0, deadline - time.monotonic()))


def pump(a: Any, b: Any) -> None:
    """Copy bytes both ways between two sockets until either side closes."""
    sockets = {a.fileno(): (a, b), b.fileno(): (b, a)}
    while True:
        readable, _, _ = select.select([a, b], [], [], 60)
        for sock in readable:
            source, sink = sockets[sock.fileno()]
            try:
                data = source.recv(1 << 16)
            except OSError:
                return
            if not data:
                return
            try:
                sink.sendall(data)
            except OSError:
                return


# ---------------------------------------------------------------------- the backend
class KubernetesBackend(ContainerBackend):
    """A namespace of a Kubernetes cluster, reached with a kubeconfig context; images built on a Docker engine."""

    kind = "kubernetes"
    #: Port-forwards enter the Pod's network namespace: kernels listen on its 127.0.0.1 only (kernel/container.py),
    #: and a kernel with --network none is reached the same way.
    forwards_to_loopback = True

    kubeconfig = Unicode(
        None, allow_none=True, config=True, help="The kubeconfig file. Unset: $KUBECONFIG, else ~/.kube/config."
    )
    context = Unicode(
        None,
        allow_none=True,
        config=True,
        help="The kubeconfig context (the target's context). Unset: the current one.",
    )
    namespace = Unicode("default", config=True, help="The namespace Pods, Jobs and Secrets are created in.")
    registry = Unicode(
        None,
        allow_none=True,
        config=True,
        help="HOST[:PORT]/REPO the cluster's nodes pull environment images from; they are pushed there first.",
    )
    gpu_resource = Unicode(
        "nvidia.com/gpu",
        config=True,
        help="The extended resource GPUs are requested as (the device plugin's: nvidia.com/gpu, amd.com/gpu, …).",
    )
    node_selector = Dict(config=True, help="nodeSelector of every Pod (e.g. {'nvidia.com/gpu.product': 'A100'}).")
    tolerations = List(Dict(), config=True, help="tolerations of every Pod (e.g. of GPU nodes' taints).")
    affinity = Dict(config=True, help="affinity of every Pod, as the API writes it.")
    image_pull_secrets = List(
        Unicode(), config=True, help="Names of docker-registry Secrets in the namespace the nodes pull with."
    )
    builder_settings = Dict(
        config=True,
        help="DockerBackend settings of the engine that builds images (the target's builder target). "
        "Empty: this machine's configured engine.",
    )
    start_timeout = Float(
        600.0, config=True, help="Seconds a Pod may take to be running (scheduling and image pull included)."
    )
    unschedulable_timeout = Float(
        60.0,
        config=True,
        help="Seconds a Pod may stay Unschedulable (no node can hold it) before the start fails, saying why. "
        "Raise it when a cluster autoscaler adds nodes.",
    )
    api_timeout = Float(60.0, config=True, help="Seconds to wait for an answer to one API call.")
    gpu_shm_size = Unicode(
        "1g", config=True, help="/dev/shm of runs that request GPUs when nothing sets shm_size (capped to memory)."
    )
    job_deadline_grace = Float(
        30.0,
        config=True,
        help="Seconds a notebook job's Job deadline (activeDeadlineSeconds) adds to its timeout: the runner "
        "stops the kernel at the timeout itself, and the cluster's deadline is the backstop.",
    )
    poll_interval = Float(1.0, config=True, help="Seconds between two status reads while waiting without a watch.")

    build_engine = Instance(ContainerBackend, allow_none=True)

    _api: Any = None
    _forwards: dict[int, PortForwarder]
    _pushed: dict[str, str]

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._forwards = {}
        self._by_container: dict[str, list[int]] = {}
        self._pushed = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ connection
    @property
    def api(self) -> Any:
        """The ``kubernetes`` ApiClient of the context, created on first use."""
        if self._api is None:
            kubernetes = kubernetes_client()
            configuration = kubernetes.client.Configuration()
            try:
                kubernetes.config.load_kube_config(
                    config_file=self.kubeconfig, context=self.context, client_configuration=configuration
                )
            except (kubernetes.config.ConfigException, OSError, ValueError, TypeError) as exc:
                where = self.kubeconfig or "$KUBECONFIG or ~/.kube/config"
                raise EngineUnavailableError(
                    f"cannot use the kubeconfig context {self.context or '(current)'} from {where}: {exc}; check "
                    "'kubectl config get-contexts' and the target's context"
                ) from None
            self._api = kubernetes.client.ApiClient(configuration)
        return self._api

    @property
    def core(self) -> Any:
        return kubernetes_client().client.CoreV1Api(self.api)

    def websocket_core(self) -> Any:
        """A CoreV1Api of its own for one exec or port-forward: ``kubernetes.stream`` swaps the ``call_api`` of
        the client it is given for the time of the call, which would send another thread's plain API calls
        (a status read) over a websocket if the client were shared."""
        kubernetes = kubernetes_client()
        return kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(self.api.configuration))

    @property
    def batch(self) -> Any:
        return kubernetes_client().client.BatchV1Api(self.api)

    @property
    def networking(self) -> Any:
        return kubernetes_client().client.NetworkingV1Api(self.api)

    @property
    def address(self) -> str:
        host = ""
        try:
            host = self.api.configuration.host
        except ContainersError:
            pass
        return f"kubernetes://{self.context or 'current'}/{self.namespace}" + (f" ({host})" if host else "")

    @property
    def is_local(self) -> bool:
        return False

    def container_user(self) -> str:
        return f"{CONTAINER_UID}:{CONTAINER_UID}"

    def close(self) -> None:
        for port in list(self._forwards):
            self.release(port)
        if self._api is not None:
            try:
                self._api.close()
            except Exception:  # noqa: BLE001 - closing a pool
                pass
            self._api = None

    def _call(self, doing: str, fn: Any, *args: Any, resources: Resources | None = None, **kwargs: Any) -> Any:
        kwargs.setdefault("_request_timeout", self.api_timeout)
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - mapped to ours here, once
            raise self.map_error(exc, doing, resources=resources) from None

    def map_error(self, exc: BaseException, doing: str, *, resources: Resources | None = None) -> ContainersError:
        """The one translation of the client's failures into our errors, from the API's Status answer."""
        kubernetes = kubernetes_client()
        if isinstance(exc, ContainersError):
            return exc
        if isinstance(exc, kubernetes.client.exceptions.ApiException):
            status = int(exc.status or 0)
            try:
                message = str(json.loads(exc.body or "{}").get("message") or exc.reason)
            except (ValueError, TypeError, AttributeError):
                message = str(exc.reason or exc)
            if status == 404:
                return NotFoundError(f"{doing}: {message}")
            if status == 409:
                return ConflictError(f"{doing}: {message}")
            if status in (401, 403):
                return EngineRefusedError(
                    f"{doing}: the cluster refused ({status}): {message}; the context {self.context or '(current)'} "
                    f"needs the rights to create pods, jobs, secrets and pods/portforward in namespace {self.namespace}"
                )
            if status == 0:
                return EngineUnavailableError(f"{doing}: the API server at {self.address} did not answer: {message}")
            return EngineRefusedError(f"{doing}: the cluster refused ({status}): {message}")
        import urllib3

        if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
            return EngineUnavailableError(
                f"{doing}: the API server at {self.address} cannot be reached ({exc}); check the cluster and "
                "'kubectl --context CONTEXT get nodes'"
            )
        raise exc

    @staticmethod
    def _dict(obj: Any) -> dict[str, Any]:
        """An API object (a model or a dict) as the API's own JSON (camelCase keys)."""
        if isinstance(obj, dict):
            return obj
        return kubernetes_client().client.ApiClient().sanitize_for_serialization(obj)

    def _delete_quietly(self, fn: Any, name: str, **kwargs: Any) -> None:
        try:
            self._call(f"deleting {name}", fn, name, self.namespace, **kwargs)
        except NotFoundError:
            pass

    # ------------------------------------------------------------------ engine
    def engine_info(self) -> EngineInfo:
        version = self._call("reading the cluster's version", kubernetes_client().client.VersionApi(self.api).get_code)
        nodes = self.nodes()
        gpus = sum(n.gpus for n in nodes)
        return EngineInfo(
            kind="kubernetes",
            version=getattr(version, "git_version", None),
            api_version=f"{getattr(version, 'major', '')}.{getattr(version, 'minor', '')}",
            address=self.address,
            os=getattr(version, "platform", None),
            cpus=int(sum(n.cpus for n in nodes)),
            memory=sum(n.memory for n in nodes),
            gpu=gpus > 0,
            gpu_support=(f"{self.gpu_resource} device plugin ({gpus} allocatable)",) if gpus else (),
            gpu_note="" if gpus else f"no node offers {self.gpu_resource}",
        )

    def nodes(self) -> list[NodeInfo]:
        from kubernetes.utils import parse_quantity

        listed = self._call("listing the cluster's nodes", self.core.list_node)
        out = []
        for node in listed.items:
            allocatable = node.status.allocatable or {}
            ready = any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
            unschedulable = bool(node.spec.unschedulable)
            out.append(
                NodeInfo(
                    name=node.metadata.name,
                    address=next((a.address for a in node.status.addresses or [] if a.type == "InternalIP"), None),
                    cpus=float(parse_quantity(allocatable.get("cpu", "0"))),
                    memory=int(parse_quantity(allocatable.get("memory", "0"))),
                    gpus=int(parse_quantity(allocatable.get(self.gpu_resource, "0"))),
                    state="ready" if ready and not unschedulable else ("cordoned" if ready else "down"),
                    labels=dict(node.metadata.labels or {}),
                )
            )
        return out

    def run_defaults(self, resources: Resources) -> Resources:
        from dataclasses import replace

        if not resources.gpus or resources.shm_size is not None or not self.gpu_shm_size:
            return resources
        size = parse_size(self.gpu_shm_size)
        if resources.memory is not None:
            size = min(size, resources.memory)
        return replace(resources, shm_size=size)

    # ------------------------------------------------------------------ images: on the build engine
    @property
    def engine(self) -> ContainerBackend:
        """The Docker engine images are built on (and pushed from)."""
        if self.build_engine is None:
            from .base import backend_class

            self.build_engine = backend_class("docker")(parent=self.parent or self, **dict(self.builder_settings))
        return self.build_engine

    def image_id(self, reference: str) -> str | None:
        return self.engine.image_id(reference)

    def image_labels(self, reference: str) -> dict[str, str]:
        return self.engine.image_labels(reference)

    def list_images(self) -> list[ImageInfo]:
        return self.engine.list_images()

    def remove_image(self, reference: str) -> None:
        self.engine.remove_image(reference)

    def tag_image(self, image: str, reference: str) -> None:
        self.engine.tag_image(image, reference)

    def pull(self, reference: str, *, on_progress: ProgressCallback | None = None) -> str:
        return self.engine.pull(reference, on_progress=on_progress)

    def push(self, reference: str, *, on_progress: ProgressCallback | None = None) -> str:
        return self.engine.push(reference, on_progress=on_progress)

    def import_image(self, stream: IO[bytes], *, changes: Sequence[str] = ()) -> str:
        return self.engine.import_image(stream, changes=changes)

    def save_images(self, references: Sequence[str], out: IO[bytes]) -> int:
        return self.engine.save_images(references, out)

    def load_images(self, stream: IO[bytes]) -> list[str]:
        return self.engine.load_images(stream)

    def repo_digests(self, reference: str) -> list[str]:
        return self.engine.repo_digests(reference)

    def image_created(self, reference: str) -> str | None:
        return self.engine.image_created(reference)

    def reload_credentials(self) -> None:
        self.engine.reload_credentials()

    def build(self, context: bytes, **kwargs: Any) -> Iterator[Any]:
        return self.engine.build(context, **kwargs)

    def cluster_image(self, image: str, *, on_progress: ProgressCallback | None = None) -> str:
        """The reference the nodes pull ``image`` (a local tag of the build engine) by: ``REGISTRY/ENV:TAG``,
        pushed there first unless it already was (the tag is content-addressed: same tag, same image).

        Raises:
            RequestError: the target has no registry.
        """
        if self.registry and image.startswith(f"{self.registry}/"):
            return image  # already the cluster's name
        if not self.registry:
            raise RequestError(
                f"the Kubernetes target {self.context or '(current context)'} has no registry: its nodes pull "
                'images from one; add registry = "HOST[:PORT]/REPO" to the target (one the nodes and this '
                "machine can reach)"
            )
        repository, _, tag = image.rpartition(":")
        if not repository or "/" in tag:
            repository, tag = image, "latest"
        remote = f"{self.registry}/{repository.rsplit('/', 1)[-1]}:{tag}"
        with self._lock:
            if remote in self._pushed:
                return remote
        image_id = self.engine.image_id(image)
        if image_id is None:
            raise NotFoundError(f"the build engine has no image {image}; build the environment first")
        pushed_repo = remote.rsplit(":", 1)[0]
        if not any(d.startswith(f"{pushed_repo}@") for d in self.engine.repo_digests(image_id)):
            self.engine.tag_image(image_id, remote)
            try:
                self.engine.push(remote, on_progress=on_progress)
            finally:
                try:
                    self.engine.remove_image(remote)  # the registry name is only a vehicle
                except ContainersError:
                    pass
        with self._lock:
            self._pushed[remote] = image_id
        return remote

    # ------------------------------------------------------------------ containers
    def object_kind(self, request: RunRequest) -> str:
        """``job`` for what runs to completion (a run, a notebook job's kernel), ``pod`` for kernels and sessions."""
        role = request.labels.get(f"{LABEL_PREFIX}.role")
        return "job" if role in _JOB_ROLES or f"{LABEL_PREFIX}.job" in request.labels else "pod"

    def manifest(
        self, request: RunRequest, name: str, kind: str, *, secret_files: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """The Pod or Job this backend creates for ``request`` (its image already the cluster's name)."""
        options: dict[str, Any] = {
            "gpu_resource": self.gpu_resource,
            "node_selector": dict(self.node_selector),
            "tolerations": list(self.tolerations),
            "affinity": dict(self.affinity),
            "image_pull_secrets": list(self.image_pull_secrets),
            "secret_files": secret_files,
            "secret_name": f"{name}-files",
        }
        if request.resources.pids is not None:
            self.log.warning(
                "--pids-limit is not set per Pod on Kubernetes: the kubelet's podPidsLimit applies (docs/scale-out.md)"
            )
        if kind != "job":
            return pod_manifest(request, name=name, namespace=self.namespace, **options)
        run = request.labels.get(f"{LABEL_PREFIX}.role") in _JOB_ROLES
        grace = 0 if run else self.job_deadline_grace
        return job_manifest(request, name=name, namespace=self.namespace, deadline_grace=grace, **options)

    def create(self, request: RunRequest) -> Container:
        role = request.labels.get(f"{LABEL_PREFIX}.role") or "run"
        if role in _BUILD_ROLES:
            return self.engine.create(request)
        from dataclasses import replace

        request = replace(
            request, image=self.cluster_image(request.image), resources=self.run_defaults(request.resources)
        )
        kind = self.object_kind(request)
        name = object_name(role, request.labels.get(f"{LABEL_PREFIX}.env"), request.name)
        manifest = self.manifest(request, name, kind)  # bad input fails here, before anything is created
        return KubernetesContainer(self, name, kind, manifest=manifest, request=request)

    def container(self, container_id: str) -> Container:
        try:
            self._call(f"looking up pod {container_id}", self.core.read_namespaced_pod, container_id, self.namespace)
            return KubernetesContainer(self, container_id, "pod")
        except NotFoundError:
            self._call(f"looking up job {container_id}", self.batch.read_namespaced_job, container_id, self.namespace)
            return KubernetesContainer(self, container_id, "job")

    def wait_until_started(self, container: KubernetesContainer) -> None:
        """Block until the Pod runs (or already ended), failing early and clearly when it cannot.

        Raises:
            NotFoundError / EngineRefusedError: the nodes cannot pull the image, or the container cannot be
                created (a missing Secret); EngineRefusedError: no node can hold the Pod for
                ``unschedulable_timeout`` (the scheduler's reason); GpuUnavailableError: that reason is GPUs;
                EngineUnavailableError: it did not run within ``start_timeout``.
        """
        started = time.monotonic()
        unschedulable_since: float | None = None
        while True:
            if container.kind == "job":
                job = container._read_job()
                if job is not None and job_condition(job, "Failed") is not None:
                    return  # ended before it ran (its deadline): state() says how
            pod = container._read_pod()
            if pod is not None:
                phase = (pod.get("status") or {}).get("phase")
                if phase in ("Running", "Succeeded", "Failed"):
                    return
                problem = start_problem(pod)
                if problem is not None:
                    reason, message = problem
                    if reason in _PULL_FAILURES:
                        image = container.request.image if container.request else "its image"
                        text = (
                            f"the cluster's nodes cannot pull {image} ({reason}: {message}); check that they reach "
                            f"the registry {self.registry} and that image_pull_secrets names a Secret with its "
                            "credentials"
                        )
                        if "not found" in message.lower() or "manifest unknown" in message.lower():
                            raise NotFoundError(text)
                        raise EngineRefusedError(text)
                    raise EngineRefusedError(
                        f"the cluster cannot start pod {pod['metadata']['name']} ({reason}): {message}"
                    )
                unschedulable = scheduling_problem(pod)
                if unschedulable is not None:
                    unschedulable_since = unschedulable_since or time.monotonic()
                    if time.monotonic() - unschedulable_since >= self.unschedulable_timeout:
                        raise self.unschedulable_error(container, unschedulable)
                else:
                    unschedulable_since = None
            if time.monotonic() - started > self.start_timeout:
                raise EngineUnavailableError(
                    f"pod of {container.id} did not start within {format_duration(self.start_timeout)}; see "
                    f"'kubectl -n {self.namespace} describe pod -l {NAME_LABEL}={container.id}', or raise "
                    "c.KubernetesBackend.start_timeout"
                )
            self.watch_for_change(container, min(self.poll_interval * 5, 10.0))

    def unschedulable_error(self, container: KubernetesContainer, message: str) -> ContainersError:
        """What no node has, and what the nodes do have (their allocatable cpu, memory, GPUs)."""
        r = container.resources
        asked = r.describe()
        try:
            shown = "; ".join(
                f"{n.name}: {n.cpus:g} CPUs, {format_size(n.memory)}, {n.gpus} {self.gpu_resource}"
                for n in self.nodes()
            )
        except ContainersError:
            shown = "unknown"
        text = (
            f"no node of the cluster can hold {container.id} ({asked}) after "
            f"{format_duration(self.unschedulable_timeout)}: {message}. The nodes have (allocatable) {shown}. "
            "Ask for less, or for what a node has (and check node_selector and tolerations)"
        )
        if r.gpus and self.gpu_resource in message:
            return GpuUnavailableError(text)
        return EngineRefusedError(text)

    def watch_for_change(self, container: KubernetesContainer, seconds: float) -> None:
        """Return when the container's Pod (or Job) changes, or after ``seconds``: a watch, not a poll loop."""
        kubernetes = kubernetes_client()
        watch = kubernetes.watch.Watch()
        if container.kind == "job" and container._pod_name is None:
            fn, selector = self.batch.list_namespaced_job, f"metadata.name={container.id}"
            version = container.versions.get("job")
        else:
            fn, selector = self.core.list_namespaced_pod, f"metadata.name={container.pod_name() or container.id}"
            version = container.versions.get("pod")
        # From the version last read, the API server sends only later changes (without it, the current object
        # first): the wait blocks until something happens instead of polling.
        options: dict[str, Any] = {"resource_version": version} if version else {}
        try:
            for _event in watch.stream(
                fn,
                self.namespace,
                field_selector=selector,
                timeout_seconds=max(1, int(seconds)),
                _request_timeout=seconds + self.api_timeout,
                **options,
            ):
                break  # something changed: read it again
        except Exception as exc:  # noqa: BLE001 - a watch that breaks just ends the wait early
            self.log.debug("watching %s: %s", container.id, exc)
            time.sleep(min(seconds, self.poll_interval))
        finally:
            watch.stop()
        time.sleep(min(seconds, self.poll_interval) / 4)

    def run(
        self,
        request: RunRequest,
        *,
        stdout: OutputCallback | None = None,
        stderr: OutputCallback | None = None,
    ) -> RunResult:
        """Run as a Job to completion, streaming its log (stdout and stderr together: the API has one log),
        then delete it; OOM and the deadline raise as on a Docker engine."""
        if request.labels.get(f"{LABEL_PREFIX}.role") in _BUILD_ROLES:
            return self.engine.run(request, stdout=stdout, stderr=stderr)
        from dataclasses import replace

        started = time.monotonic()
        labelled = {**request.labels, f"{LABEL_PREFIX}.role": request.labels.get(f"{LABEL_PREFIX}.role", "run")}
        container = self.create(replace(request, labels=labelled))
        assert isinstance(container, KubernetesContainer)
        container.kind = "job"
        container._rebuild_manifest()
        try:
            container.start()
            follower = threading.Thread(target=self._follow_log, args=(container, stdout), daemon=True)
            follower.start()
            timeout = request.resources.timeout
            exit_code = container.wait(None if timeout is None else timeout + self.api_timeout)
            follower.join(10)
            state = container.state()
            if exit_code is None or state.timed_out:
                raise RunTimeoutError(timeout_message(timeout), exit_code=124)
            if state.oom_killed and exit_code != 0:
                raise OutOfMemoryError(out_of_memory_message(request.resources.memory, exit_code), exit_code=exit_code)
            return RunResult(exit_code=exit_code, seconds=time.monotonic() - started, container_id=container.id)
        finally:
            self.remove_container(container.id)

    def _follow_log(self, container: KubernetesContainer, stdout: OutputCallback | None) -> None:
        if stdout is None:
            return
        name = container.pod_name(wait=30.0)
        if name is None:
            return
        try:
            response = self.core.read_namespaced_pod_log(
                name, self.namespace, container=MAIN, follow=True, _preload_content=False
            )
            for chunk in response.stream(1 << 14):
                stdout(chunk)
        except Exception:
            self.log.debug("log of %s ended", name, exc_info=True)

    def list_containers(self, *, all: bool = False, labels: Mapping[str, str] | None = None) -> list[ContainerInfo]:
        wanted = {**(labels or {}), MANAGED_LABEL: "true"}
        selectable, _ = split_labels(wanted)
        selector = ",".join(f"{k}={v}" for k, v in sorted(selectable.items()))
        pods = self._call("listing pods", self.core.list_namespaced_pod, self.namespace, label_selector=selector)
        out = []
        for item in pods.items:
            pod = self._dict(item)
            annotations = pod["metadata"].get("annotations") or {}
            if any(annotations.get(k, (pod["metadata"].get("labels") or {}).get(k)) != v for k, v in wanted.items()):
                continue  # a value too long or odd for a label is matched exactly on its annotation
            state = pod_state(pod)
            if not all and not state.running:
                continue
            kind = (pod["metadata"].get("labels") or {}).get(OBJECT_LABEL, "pod")
            name = (pod["metadata"].get("labels") or {}).get(NAME_LABEL) or pod["metadata"]["name"]
            created = pod["metadata"].get("creationTimestamp")
            out.append(
                ContainerInfo(
                    id=name if kind == "job" else pod["metadata"]["name"],
                    name=pod["metadata"]["name"],
                    image=pod["spec"]["containers"][0].get("image", ""),
                    state=state.status,
                    status=(pod.get("status") or {}).get("phase", ""),
                    labels={**(pod["metadata"].get("labels") or {}), **annotations},
                    created=datetime.fromisoformat(str(created).replace("Z", "+00:00")).timestamp()
                    if created
                    else None,
                    node=pod["spec"].get("nodeName"),
                )
            )
        return out

    def remove_container(self, container_id: str) -> None:
        """Delete the Pod, or the Job with its Pod (propagation: the API's default for Jobs would orphan it)."""
        kubernetes = kubernetes_client()
        body = kubernetes.client.V1DeleteOptions(propagation_policy="Background", grace_period_seconds=5)
        try:
            self._call(
                f"deleting job {container_id}",
                self.batch.delete_namespaced_job,
                container_id,
                self.namespace,
                body=body,
            )
            return
        except NotFoundError:
            pass
        self._delete_quietly(self.core.delete_namespaced_pod, container_id, body=body)

    def usage(self, container_ids: Sequence[str]) -> dict[str, Usage]:
        """From metrics-server (metrics.k8s.io) when the cluster has it; else nothing (left out)."""
        from kubernetes.utils import parse_quantity

        custom = kubernetes_client().client.CustomObjectsApi(self.api)
        out: dict[str, Usage] = {}
        for container_id in container_ids:
            try:
                metrics = self._call(
                    f"reading the usage of {container_id}",
                    custom.get_namespaced_custom_object,
                    "metrics.k8s.io",
                    "v1beta1",
                    self.namespace,
                    "pods",
                    container_id,
                )
            except ContainersError:
                continue
            for entry in metrics.get("containers") or []:
                if entry.get("name") == MAIN:
                    figures = entry.get("usage") or {}
                    out[container_id] = Usage(
                        cpu_percent=float(parse_quantity(figures.get("cpu", "0"))) * 100,
                        memory_used=int(parse_quantity(figures.get("memory", "0"))),
                    )
        return out

    # ------------------------------------------------------------------ streams
    def exec(self, pod: str, command: Sequence[str], *, stdin: bytes | None = None) -> bytes:
        """Run ``command`` in the Pod's container through the API server's exec stream; its stdout.

        Raises:
            EngineRefusedError: it exited non-zero (with its stderr); NotFoundError: no such Pod.
        """
        from kubernetes.stream import stream

        response = self._call(
            f"running {command[0]} in pod {pod}",
            stream,
            self.websocket_core().connect_get_namespaced_pod_exec,
            pod,
            self.namespace,
            container=MAIN,
            command=list(command),
            stdin=stdin is not None,
            stdout=True,
            stderr=True,
            tty=False,
            _preload_content=False,
            binary=True,
        )
        out, err = io.BytesIO(), io.BytesIO()
        try:
            if stdin is not None:
                for offset in range(0, len(stdin), 1 << 16):
                    response.write_stdin(stdin[offset : offset + (1 << 16)])
            while response.is_open():
                response.update(timeout=self.api_timeout)
                if response.peek_stdout():
                    out.write(response.read_stdout())
                if response.peek_stderr():
                    err.write(response.read_stderr())
            out.write(response.read_stdout() or b"")
            err.write(response.read_stderr() or b"")
            code = response.returncode
        finally:
            response.close()
        if code not in (0, None):
            text = err.getvalue().decode("utf-8", "replace").strip()[-300:]
            raise EngineRefusedError(f"{command[0]} in pod {pod} exited with code {code}: {text}")
        return out.getvalue()

    def forward(self, container_id: str, pod: str, port: int) -> int:
        """A loopback listener here for ``port`` of ``pod`` (see :class:`PortForwarder`); its local port."""
        kubernetes_client()
        forwarder = PortForwarder(self, pod, port)
        with self._lock:
            self._forwards[forwarder.local_port] = forwarder
            self._by_container.setdefault(container_id, []).append(forwarder.local_port)
        return forwarder.local_port

    def reach(self, host_port: int) -> tuple[str, int]:
        return "127.0.0.1", host_port

    def release(self, host_port: int) -> None:
        with self._lock:
            forwarder = self._forwards.pop(host_port, None)
        if forwarder is not None:
            forwarder.close()

    def close_forwards(self, container_id: str) -> None:
        with self._lock:
            ports = self._by_container.pop(container_id, [])
        for port in ports:
            self.release(port)

    def publish_address(self) -> str:
        return "127.0.0.1"
