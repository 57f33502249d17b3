"""Container kernels started the way Jupyter starts any kernel: an installed-style kernelspec and
jupyter_client's ``KernelManager``, so the tests go through our provisioner exactly as a notebook server does."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def provisioner_kernel(
    project: Path, environment: str, config: Any, *, target: str, options: dict[str, Any] | None = None
) -> Iterator[tuple[Any, Any]]:
    """``(kernel manager, client)`` of a ready kernel of ``environment`` on ``target``, shut down (its
    container with it) at the end."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    from jupyter_containers.kernel.kernelspec import kernel_spec_dict

    name = f"containers-{environment}-{target}" + ("-" + "-".join(sorted(options)) if options else "")
    kernels = project / ".kernels"
    (kernels / name).mkdir(parents=True, exist_ok=True)
    spec = kernel_spec_dict(environment, project / "containers.toml", options or {}, target=target)
    (kernels / name / "kernel.json").write_text(json.dumps(spec))
    km = KernelManager(
        kernel_name=name, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]), config=config
    )
    km.start_kernel(cwd=str(project))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def stream_text(kc: Any, code: str, *, timeout: float = 120, check: bool = True) -> str:
    """What running ``code`` through ``kc`` printed (its stream outputs); with ``check``, the reply's status is
    asserted ok (naming the code and the reply)."""
    seen: list[str] = []
    reply = kc.execute_interactive(
        code,
        output_hook=lambda m: seen.append(m["content"].get("text", "")) if m["msg_type"] == "stream" else None,
        timeout=timeout,
    )
    if check:
        assert reply["content"]["status"] == "ok", (code, reply["content"], seen)
    return "".join(seen)


def interrupted_sleep(km: Any, kc: Any, after: float = 1.0) -> dict[str, Any]:
    """The reply to a 60 s sleep that ``km`` interrupts after ``after`` seconds (asserting it did)."""
    done = threading.Event()
    threading.Timer(after, lambda: (km.interrupt_kernel(), done.set())).start()
    reply = kc.execute_interactive("import time; time.sleep(60)", timeout=30)
    assert done.is_set(), "the reply came before the interrupt was sent"
    return reply
