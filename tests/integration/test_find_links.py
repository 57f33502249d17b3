"""``find_links`` on the real engine: a wheel no index holds, written in the test, installed and imported.

The wheel reaches the install layers through a bind mount only (never a layer), from its folder's image (loaded
once per engine, not sent with each build's context); a rebuilt wheel is a new
tag and is installed afresh (not served from uv's cache of the old one under the same file name); the
incremental layer and ``--locked`` builds find it too.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from jupyter_containers.backends.base import RunRequest, labels, owner_labels
from jupyter_containers.manager import ContainersManager
from jupyter_containers.spec.model import Resources

from ..wheels import write_wheel

pytestmark = pytest.mark.engine


def run(manager: ContainersManager, image: str, code: str) -> str:
    """``python -c code`` in the image, labelled as this process's (a concurrent test session's cleanup spares it)."""
    out = bytearray()
    request = RunRequest(
        image=image,
        command=["python", "-c", code],
        resources=Resources(network=False),
        labels=labels(role="test-probe", **owner_labels()),
    )
    result = manager.backend.run(request, stdout=out.extend)
    assert result.exit_code == 0, out.decode()
    return out.decode().strip()


def test_a_private_wheel_is_installed_from_a_find_links_folder(tmp_path: Path, engine_config):
    # given a wheel no index holds, in a folder next to the spec, and an environment installing it
    nonce = uuid.uuid4().hex[:12]
    write_wheel(tmp_path / "wheels", value=f"one-{nonce}")
    spec = tmp_path / "containers.toml"
    body = (
        f'[environments.private]\nfind_links = ["wheels"]\npip = ["jc-private-demo==1.0.0"]\nenv = {{ N = "{nonce}" }}'
    )
    body += "\n"
    spec.write_text(body)
    manager = ContainersManager(spec_path=spec, config=engine_config)
    # when it is built
    first = manager.build("private")
    # then the container imports the wheel's module, and the lock records it
    assert first.built
    assert run(manager, first.image, "import jc_private_demo; print(jc_private_demo.VALUE)") == f"one-{nonce}"
    assert first.lock is not None and "jc-private-demo==1.0.0" in first.lock.packages
    # and the wheel was only mounted: it is in no layer's history, nor anywhere in the image (BuildKit leaves the
    # mount point, an empty folder)
    history = json.dumps(manager.backend.api.history(first.image))
    assert "py3-none-any.whl" not in history and "COPY .jc/find-links" not in history
    found = "import glob; print([p for d in ('/opt', '/tmp', '/home', '/root', '/usr', '/var', '/workspace') "
    found += "for p in glob.glob(d + '/**/jc_private_demo*.whl', recursive=True)])"
    assert run(manager, first.image, found) == "[]"
    # (BuildKit leaves each mount point, an empty folder)
    listing = "import os; d = '/tmp/jupyter-containers/find-links'; "
    listing += "print([os.listdir(f'{d}/{n}') for n in os.listdir(d)])"
    assert run(manager, first.image, listing) == "[[]]"
    # the wheel travelled once, in its folder's image (images/mounted.py), not in the build's context
    plan = manager.builder.plan(manager.environment("private"))
    assert plan.inputs is not None and len(plan.inputs.find_links) == 1
    wheels_image = f"jupyter-containers/wheels:{plan.inputs.find_links[0]}"
    assert f"from={wheels_image},source=/wheels" in plan.dockerfile
    assert b".whl" not in manager.builder.context_tar(plan)
    assert manager.backend.image_labels(wheels_image)["io.jupyter.containers.role"] == "wheels"
    assert manager.backend.image_labels(first.image)["io.jupyter.containers.wheels"] == plan.inputs.find_links[0]

    # when nothing changed, then nothing is built
    assert manager.build("private").built is False

    # when a package is added to the spec: one layer on the previous image, which still finds the wheel
    spec.write_text(body.replace('pip = ["jc-private-demo==1.0.0"]', 'pip = ["jc-private-demo==1.0.0", "six"]'))
    added = manager.build("private")
    assert added.built and added.incremental_from == first.image_id
    assert run(manager, added.image, "import jc_private_demo, six; print(jc_private_demo.VALUE)") == f"one-{nonce}"

    # when the wheel is rebuilt with other contents under the same file name
    write_wheel(tmp_path / "wheels", value=f"two-{nonce}")
    rebuilt = manager.build("private")
    # then it is another tag, built in full, holding the new bytes
    assert rebuilt.built and rebuilt.image != added.image and not rebuilt.incremental_from
    assert run(manager, rebuilt.image, "import jc_private_demo; print(jc_private_demo.VALUE)") == f"two-{nonce}"

    # when it is built --locked from that lock (the pinned list, no resolution), the wheel is found again
    locked = manager.build("private", locked=True)
    assert locked.built and locked.image != rebuilt.image
    assert run(manager, locked.image, "import jc_private_demo; print(jc_private_demo.VALUE)") == f"two-{nonce}"

    # prune keeps a folder's image while an environment image was built from it, and lists it once none is
    second_image = (
        f"jupyter-containers/wheels:{manager.builder.plan(manager.environment('private')).inputs.find_links[0]}"
    )
    assert second_image != wheels_image
    for image in (first.image, added.image):
        manager.backend.remove_image(image)
    listed = manager.prune(dry_run=True)["images"]
    assert wheels_image in listed and second_image not in listed
    for image in (rebuilt.image, locked.image):
        manager.backend.remove_image(image)
    assert second_image in manager.prune(dry_run=True)["images"]
    for image in (wheels_image, second_image):
        manager.backend.remove_image(image)


def test_the_packages_are_compiled_but_their_test_suites(tmp_path: Path, engine_config):
    """Bytecode at build time for every module of the spec's packages except their own ``tests/`` folders
    (dockerfile.COMPILE_EXCLUDE), in a cold build and in the incremental layer of an edit; a module left out
    still imports (and is compiled on the way, the container user owning the virtualenv)."""
    nonce = uuid.uuid4().hex[:12]
    modules = {"core.py": "ANSWER = 42\n", "tests/__init__.py": "", "tests/test_core.py": "from .. import core\n"}
    write_wheel(tmp_path / "wheels", value=f"c-{nonce}", modules=modules)
    spec = tmp_path / "containers.toml"
    body = '[environments.compiled]\nfind_links = ["wheels"]\npip = ["jc-private-demo==1.0.0"]\n'
    body += f'env = {{ N = "{nonce}" }}\n'
    spec.write_text(body)
    manager = ContainersManager(spec_path=spec, config=engine_config)
    # the bytecode files of the package (relative to it), and whether ipykernel's and six's have any
    probe = (
        "import glob, os, jc_private_demo as p; root = os.path.dirname(p.__file__); "
        "print(sorted(os.path.relpath(f, root) for f in glob.glob(root + '/**/*.pyc', recursive=True)))"
    )
    compiled = "import glob, os, {0}; print(bool(glob.glob(os.path.dirname({0}.__file__) + '/__pycache__/*.pyc')))"
    # when it is built cold
    cold = manager.build("compiled")
    listed = run(manager, cold.image, probe)
    # then the package's modules have bytecode and its test suite has none
    assert "'__pycache__/__init__.cpython-" in listed and "'__pycache__/core.cpython-" in listed, listed
    assert "tests" not in listed, listed
    # and the kernel's own packages were compiled as before (by uv, in the seed layer)
    assert run(manager, cold.image, compiled.format("ipykernel")) == "True"
    # and a test module still imports
    assert run(manager, cold.image, "import jc_private_demo.tests.test_core as t; print(t.core.ANSWER)") == "42"

    # when a package is added (the incremental layer on the previous image)
    spec.write_text(body.replace('pip = ["jc-private-demo==1.0.0"]', 'pip = ["jc-private-demo==1.0.0", "six"]'))
    added = manager.build("compiled")
    # then the new package is compiled too, and still no test suite
    assert added.built and added.incremental_from == cold.image_id
    assert (
        run(
            manager,
            added.image,
            "import glob, os, six; print(bool(glob.glob(os.path.dirname(six.__file__) + '/__pycache__/six.*.pyc')))",
        )
        == "True"
    )
    assert "tests" not in run(manager, added.image, probe)
