"""``%container execute``'s options: the command line's ``--target`` and ``--reschedule`` (no engine is reached:
the flag is settled on the run's manager before anything is built)."""

from __future__ import annotations

import re

import pytest

from jupyter_containers.errors import RequestError

from .test_swarm_spec import RESCHEDULE_SPEC as SPEC  # a swarm target, another target and their environments


def _parsed(tmp_path, argv: list[str]):
    """``argv`` as ``%container execute`` parses it, and the manager it would run with."""
    from jupyter_containers.magics import _execute_parser
    from jupyter_containers.manager import ContainersManager

    (tmp_path / "containers.toml").write_text(SPEC)
    args = _execute_parser().parse_args(argv)
    return args, ContainersManager(spec_path=tmp_path / "containers.toml").for_target(args.target)


def test_execute_takes_the_command_lines_target_and_reschedule(tmp_path):
    args, manager = _parsed(tmp_path, ["nb.ipynb", "--env", "demo", "--target", "sw", "--reschedule"])
    assert (args.target, args.reschedule) == ("sw", True)
    assert manager.target == "sw"
    args, _ = _parsed(tmp_path, ["nb.ipynb", "--env", "demo"])
    assert (args.target, args.reschedule) == (None, False)


@pytest.mark.parametrize(
    "argv",
    [
        ["nb.ipynb", "--env", "demo", "--target", "sw", "--reschedule"],
        ["nb.ipynb", "--env", "away", "--reschedule"],  # the environment's own target = "sw"
    ],
)
def test_reschedule_holds_for_the_run_only(tmp_path, argv):
    from jupyter_containers.magics import rescheduled

    # given a run on a swarm target, asking for --reschedule
    args, manager = _parsed(tmp_path, argv)
    backend = manager.for_environment(args.env).backend
    assert backend.kind == "swarm" and backend.reschedule_on_node_failure is False
    # when it runs, then its backend reschedules
    with rescheduled(args, manager):
        assert backend.reschedule_on_node_failure is True
    # and afterwards the kernel's manager has the target's own setting again
    assert backend.reschedule_on_node_failure is False


def test_without_reschedule_the_target_decides(tmp_path):
    from jupyter_containers.magics import rescheduled

    args, manager = _parsed(tmp_path, ["nb.ipynb", "--env", "demo", "--target", "sw"])
    backend = manager.for_environment("demo").backend
    with rescheduled(args, manager):
        assert backend.reschedule_on_node_failure is False
    # and a target whose own setting is on keeps it, during the run and after
    backend.reschedule_on_node_failure = True
    with rescheduled(args, manager):
        assert backend.reschedule_on_node_failure is True
    assert backend.reschedule_on_node_failure is True


@pytest.mark.parametrize(
    ("argv", "where"),
    [
        (["nb.ipynb", "--env", "demo", "--target", "box", "--reschedule"], "target 'box' (kind 'docker')"),
        (["nb.ipynb", "--env", "demo", "--reschedule"], "the local engine"),
    ],
)
def test_reschedule_off_a_swarm_is_refused_naming_the_target(tmp_path, argv, where):
    from jupyter_containers.magics import rescheduled

    args, manager = _parsed(tmp_path, argv)
    ran = False
    refusal = re.escape(f"--reschedule: 'demo' runs on {where}, not on a swarm")
    with pytest.raises(RequestError, match=refusal) as raised:
        with rescheduled(args, manager):
            ran = True
    assert 'kind = "swarm"' in str(raised.value)
    assert not ran
