#!/usr/bin/env bash
# A short check for a machine that HAS an NVIDIA GPU (no Docker needed there), for what the test suite cannot
# do on GPU-less CI machines (docs/gpus.md):
#   1. nvidia-smi answers and lists the GPUs;
#   2. our GPU usage reader (jupyter_containers/usage.py: NVML via pynvml if installed, else nvidia-smi's CSV
#      query) reads the real devices, twice, with its timing;
#   3. if PyTorch is importable, a small model trains on the GPU, with timings (else it says why it skips).
# Usage: bash scripts/gpu-check.sh   (PYTHON=/path/to/python to choose the interpreter; exit 1 on a failed check)
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || command -v python3)}
status=0

echo "== 1. nvidia-smi"
if ! command -v nvidia-smi >/dev/null; then
  echo "FAIL: nvidia-smi is not on PATH: install the NVIDIA driver (this script is for a machine with a GPU)"
  exit 1
fi
if ! nvidia-smi -L; then
  echo "FAIL: nvidia-smi -L failed: the driver is not loaded or sees no GPU"
  exit 1
fi
nvidia-smi --query-gpu=index,uuid,name,driver_version,utilization.gpu,memory.used,memory.total --format=csv

echo "== 2. the usage reader (jupyter_containers.usage) on the real devices"
# Only the standard library is needed: the package folder is put on sys.path, nothing is installed.
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" - <<'EOF' || status=1
import sys
import time

from jupyter_containers.usage import GpuReader, read_nvidia_smi, read_nvml, visible_devices

for name, read in (("NVML (pynvml)", read_nvml), ("nvidia-smi CSV", read_nvidia_smi)):
    started = time.perf_counter()
    devices = read()
    ms = (time.perf_counter() - started) * 1000
    if devices is None:
        print(f"{name}: not available ({ms:.0f} ms)" + (" - pip install nvidia-ml-py to use NVML" if "NVML" in name else ""))
        continue
    print(f"{name}: {len(devices)} GPU(s) in {ms:.0f} ms")
    for d in devices:
        used = d.memory_used / 2**20 if d.memory_used is not None else float("nan")
        total = d.memory_total / 2**20 if d.memory_total is not None else float("nan")
        print(f"  GPU {d.index} {d.uuid} {d.name}: {d.utilization_percent}% {used:.0f} MiB / {total:.0f} MiB")
reader = GpuReader(max_age=0)
devices = reader.devices()
if not devices:
    print("FAIL: the reader the Docker backend uses for a local engine found no GPU")
    sys.exit(1)
print("mapping: NVIDIA_VISIBLE_DEVICES=0 ->", [d.uuid for d in visible_devices("0", devices)])
print("mapping: NVIDIA_VISIBLE_DEVICES=" + devices[-1].uuid, "->", [d.index for d in visible_devices(devices[-1].uuid, devices)])
EOF

echo "== 3. a small model on the GPU (PyTorch)"
if ! "$PYTHON" -c "import torch" 2>/dev/null; then
  echo "SKIP: PyTorch is not importable by $PYTHON (pip install torch, or PYTHON=/path/to/python with torch)"
else
  "$PYTHON" - <<'EOF' || status=1
import time

import torch

if not torch.cuda.is_available():
    raise SystemExit(f"FAIL: torch {torch.__version__} sees no CUDA device (CUDA build: {torch.version.cuda})")
device = torch.device("cuda")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}")
torch.manual_seed(0)
x = torch.randn(8192, 512, device=device)
y = (x[:, :1] > 0).float()
model = torch.nn.Sequential(torch.nn.Linear(512, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 1)).to(device)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
loss_fn = torch.nn.BCEWithLogitsLoss()


def epoch() -> float:
    for batch in range(0, len(x), 512):
        optimizer.zero_grad()
        loss = loss_fn(model(x[batch : batch + 512]), y[batch : batch + 512])
        loss.backward()
        optimizer.step()
    torch.cuda.synchronize()
    return float(loss)


started = time.perf_counter()
first = epoch()
warm = time.perf_counter() - started
started = time.perf_counter()
for _ in range(20):
    last = epoch()
steady = (time.perf_counter() - started) / 20
print(f"first epoch (with CUDA start-up) {warm * 1000:.0f} ms; then {steady * 1000:.1f} ms per epoch "
      f"({len(x) / steady:,.0f} samples/s); loss {first:.3f} -> {last:.3f}")
print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
if not last < first:
    raise SystemExit("FAIL: the loss did not go down")
EOF
fi

[ "$status" = 0 ] && echo "gpu-check: OK" || echo "gpu-check: FAILED (see above)"
exit "$status"
