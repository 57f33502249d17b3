"""Tiny wheels written by hand for the ``find_links`` tests: a pure-Python package of one module, no build tool."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path


def write_wheel(
    folder: Path,
    name: str = "jc_private_demo",
    version: str = "1.0.0",
    value: str = "one",
    modules: dict[str, str] | None = None,
) -> Path:
    """``NAME-VERSION-py3-none-any.whl`` in ``folder``, whose module ``NAME`` has ``VALUE = value`` (and the
    package's further ``modules``: path under ``NAME/`` → source).

    A name no index holds, so that uv can only find it in the folder; fixed zip dates, so that the same
    arguments give the same bytes (and another ``value`` other bytes under the same file name).
    """
    dist = f"{name}-{version}"
    files = {
        f"{name}/__init__.py": f"VALUE = {value!r}\n",
        **{f"{name}/{path}": text for path, text in (modules or {}).items()},
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n",
        f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: jupyter-containers-tests\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        data = text.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    files[f"{dist}.dist-info/RECORD"] = "\n".join([*record, f"{dist}.dist-info/RECORD,,"]) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, text in files.items():
            archive.writestr(zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0)), text)
    return wheel
