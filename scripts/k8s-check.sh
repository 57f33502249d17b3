#!/usr/bin/env bash
# Check the Kubernetes backend against a real cluster (kind, k3d, or a GPU cluster): what the tests of this
# repository cannot do, since no cluster runs where they run (docs/scale-out.md, "What was tested here").
#
#   scripts/k8s-check.sh --context kind-kind --registry localhost:5001/jc [--namespace jc-check] [--gpus 1]
#
# Needs: kubectl and the context; a Docker engine here that builds the images and can push to --registry; the
# nodes can pull from --registry (for kind: https://kind.sigs.k8s.io/docs/user/local-registry/); this
# repository installed with the kubernetes extra (pip install -e '.[kubernetes]'). It creates the namespace
# if needed, runs each check in a throw-away project folder, and deletes what it created at the end (also on
# failure). Exit status 0 when every check passed; each check prints PASS or FAIL with what it saw.
set -euo pipefail

context=""
registry=""
namespace="jc-check"
gpus=0
keep_namespace=0
usage() {
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    echo "options: --context NAME --registry HOST[:PORT]/REPO [--namespace NAME] [--gpus N] [--keep-namespace]"
}
while [[ $# -gt 0 ]]; do
    case "$1" in
    --context) context="$2"; shift 2 ;;
    --registry) registry="$2"; shift 2 ;;
    --namespace) namespace="$2"; shift 2 ;;
    --gpus) gpus="$2"; shift 2 ;;
    --keep-namespace) keep_namespace=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
done
if [[ -z "$context" || -z "$registry" ]]; then
    usage >&2
    exit 2
fi

here="$(cd "$(dirname "$0")/.." && pwd)"
jc="${JC:-$here/.venv/bin/jupyter-containers}"
python="${PYTHON:-$here/.venv/bin/python}"
kc=(kubectl --context "$context" --namespace "$namespace")
work="$(mktemp -d)"
failures=0
created_namespace=0

# shellcheck disable=SC2329  # invoked by the EXIT trap
cleanup() {
    # Only what this script made: our labelled Pods and Jobs in the namespace, then the namespace if it was ours.
    "${kc[@]}" delete jobs,pods,secrets,networkpolicies -l io.jupyter.containers.managed=true \
        --ignore-not-found --wait=false >/dev/null 2>&1 || true
    if [[ $created_namespace == 1 && $keep_namespace == 0 ]]; then
        kubectl --context "$context" delete namespace "$namespace" --wait=false >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

pass() { echo "PASS  $*"; }
fail() {
    echo "FAIL  $*"
    failures=$((failures + 1))
}

echo "== cluster"
kubectl --context "$context" version || { echo "cannot reach the cluster of context $context" >&2; exit 1; }
if ! kubectl --context "$context" get namespace "$namespace" >/dev/null 2>&1; then
    kubectl --context "$context" create namespace "$namespace"
    created_namespace=1
fi

cat >"$work/containers.toml" <<EOF
[targets.cluster]
kind = "kubernetes"
context = "$context"
namespace = "$namespace"
registry = "$registry"

[environments.check]
pip = ["numpy"]
EOF
cat >"$work/check.ipynb" <<'EOF'
{"cells": [{"cell_type": "code", "execution_count": null, "metadata": {}, "outputs": [],
  "source": ["import os, socket\n", "print('ran on', socket.gethostname(), 'as uid', os.getuid())"]}],
 "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
 "nbformat": 4, "nbformat_minor": 5}
EOF
cat >"$work/sleep.ipynb" <<'EOF'
{"cells": [{"cell_type": "code", "execution_count": null, "metadata": {}, "outputs": [],
  "source": ["import time\n", "time.sleep(600)"]}],
 "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
 "nbformat": 4, "nbformat_minor": 5}
EOF
cd "$work"

echo "== 1. build here, push to $registry"
if "$jc" build check --target cluster; then pass "build"; else fail "build"; fi

echo "== 2. a run as a Job (non-root, limits)"
out="$("$jc" run check --target cluster --cpus 0.5 --memory 512m -- python -c \
    'import os; print("uid", os.getuid()); print(open("/sys/fs/cgroup/memory.max").read().strip())' 2>&1)" || true
echo "$out"
if grep -q "uid 1000" <<<"$out" && grep -q "536870912" <<<"$out"; then
    pass "run: uid 1000, memory.max 512 MiB"
else
    fail "run: expected uid 1000 and memory.max 536870912"
fi

echo "== 3. a notebook job"
if "$jc" execute check.ipynb --env check --target cluster -o check.out.ipynb &&
    grep -q "ran on" check.out.ipynb; then
    pass "execute: output notebook written"
else
    fail "execute"
fi

echo "== 4. a kernel through the provisioner (port-forward, CurveZMQ)"
if "$python" - <<'EOF'
import json, os, sys, tempfile
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from jupyter_containers.kernel.kernelspec import kernel_spec_dict
# The kernelspec 'jupyter-containers kernelspec install check --target cluster' writes, in a folder of its own.
folder = tempfile.mkdtemp()
os.makedirs(f"{folder}/jc-check")
with open(f"{folder}/jc-check/kernel.json", "w") as fh:
    json.dump(kernel_spec_dict("check", "containers.toml", {}, target="cluster"), fh)
km = KernelManager(kernel_name="jc-check", kernel_spec_manager=KernelSpecManager(kernel_dirs=[folder]))
km.start_kernel()
try:
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=300)
    reply = kc.execute_interactive("import socket; print(socket.gethostname())", timeout=60)
    ok = reply["content"]["status"] == "ok"
    info = km.get_connection_info()
    print("transport", info["transport"], "ip", info["ip"], "curve", bool(info.get("curve_publickey")))
    kc.stop_channels()
finally:
    km.shutdown_kernel(now=True)
sys.exit(0 if ok and info["ip"] == "127.0.0.1" and info.get("curve_publickey") else 1)
EOF
then pass "kernel: executed through 127.0.0.1 port-forwards with CurveZMQ"; else fail "kernel"; fi

echo "== 5. out of memory"
out="$("$jc" run check --target cluster --memory 128m -- python -c \
    'b = bytearray(512 << 20); print(len(b))' 2>&1)" && code=0 || code=$?
echo "$out"
if [[ $code == 137 ]] && grep -q "ran out of its 128 MiB memory limit" <<<"$out"; then
    pass "OOM: exit 137 and the out-of-memory message"
else
    fail "OOM: exit status $code"
fi

echo "== 6. deadline"
out="$("$jc" run check --target cluster --timeout 20s -- sleep 600 2>&1)" && code=0 || code=$?
echo "$out"
if [[ $code == 124 ]] && grep -q "timeout" <<<"$out"; then
    pass "deadline: exit 124 (Job DeadlineExceeded)"
else
    fail "deadline: exit status $code"
fi

echo "== 7. nothing fits"
start=$SECONDS
out="$("$jc" run check --target cluster --memory 100000g -- true 2>&1)" && code=0 || code=$?
echo "$out"
if [[ $code != 0 ]] && grep -q "no node of the cluster can hold" <<<"$out" && ((SECONDS - start < 300)); then
    pass "unschedulable: refused in $((SECONDS - start)) s, naming what the nodes have"
else
    fail "unschedulable: exit status $code after $((SECONDS - start)) s"
fi

if [[ $gpus -gt 0 ]]; then
    echo "== 8. GPUs ($gpus)"
    out="$("$jc" run check --target cluster --gpus "$gpus" -- nvidia-smi -L 2>&1)" || true
    echo "$out"
    if [[ "$(grep -c '^GPU ' <<<"$out")" == "$gpus" ]]; then pass "gpus: $gpus visible"; else fail "gpus"; fi
fi

echo "== 9. cleanup: nothing of ours left running"
sleep 5
left="$("${kc[@]}" get jobs,pods -l io.jupyter.containers.managed=true -o name 2>/dev/null | grep -v Terminating || true)"
if [[ -z "$left" ]]; then pass "cleanup: no Job or Pod left"; else fail "cleanup: left $left"; fi

echo
if [[ $failures == 0 ]]; then echo "all checks passed"; else echo "$failures check(s) failed"; fi
exit $((failures > 0))
