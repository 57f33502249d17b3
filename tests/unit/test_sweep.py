"""Parameter sweeps: the ``--sweep`` grammar, the combinations and their file names, and the HPA rule that
decides how many jobs run at once (pure functions; the engine test is tests/integration/test_sweep.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jupyter_containers.backends.base import NodeInfo
from jupyter_containers.errors import RequestError
from jupyter_containers.jobs.sweep import (
    MAX_COMBINATIONS,
    SweepJob,
    bounded,
    capacity,
    check_options,
    combinations,
    hpa_desired,
    output_name,
    output_paths,
    parse_sweep,
    parse_sweeps,
    summary_rows,
    sweep_axes,
)
from jupyter_containers.spec.model import Resources

GiB = 1 << 30


# ---------------------------------------------------------------------- grammar
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alpha=0.1,0.2,0.5", ("alpha", [0.1, 0.2, 0.5])),
        ("seed=1..4", ("seed", [1, 2, 3, 4])),
        ("seed=0..10..5", ("seed", [0, 5, 10])),
        ("seed=3..1", ("seed", [3, 2, 1])),
        ("seed=-2..0", ("seed", [-2, -1, 0])),
        ("seed=1..2,7", ("seed", [1, 2, 7])),
        ("flag=True,False,None", ("flag", [True, False, None])),
        ("model=resnet,vit", ("model", ["resnet", "vit"])),
        ("n=5", ("n", [5])),
    ],
)
def test_sweep_values_are_typed_as_papermill_types_p_values(text, expected):
    # when
    parsed = parse_sweep(text)

    # then
    assert parsed == expected
    assert [type(v) for v in parsed[1]] == [type(v) for v in expected[1]]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("alpha", "use NAME=VALUES"),
        ("=1,2", "use NAME=VALUES"),
        ("2x=1", "not a Python variable name"),
        ("class=1", "not a Python variable name"),
        ("a=1,,2", "an empty value"),
        ("a=", "an empty value"),
        ("a=0.1..0.5", "not a range of whole numbers"),
        ("a=1..5..0", "the step must not be 0"),
        ("a=1..5..-1", "is empty"),
        ("a=1..100000000", "more than"),
    ],
)
def test_a_bad_sweep_is_refused_naming_it(text, message):
    # when / then
    with pytest.raises(RequestError, match=message) as caught:
        parse_sweep(text)
    assert repr(text) in str(caught.value)


def test_a_parameter_swept_twice_or_also_fixed_is_refused():
    with pytest.raises(RequestError, match="swept twice"):
        parse_sweeps(["a=1,2", "a=3"])
    with pytest.raises(RequestError, match="also given as a fixed parameter"):
        parse_sweeps(["a=1,2"], fixed={"a": 0})


def test_too_many_combinations_are_refused_with_the_count():
    # given: 1000 × 1000 combinations
    with pytest.raises(RequestError, match=rf"1000 × 1000 = 1000000 combinations, over the {MAX_COMBINATIONS}"):
        parse_sweeps(["a=1..1000", "b=1..1000"])


def test_combinations_are_the_cartesian_product_last_axis_fastest():
    # when
    combos = combinations(parse_sweeps(["alpha=0.1,0.2,0.5", "seed=1..4"]))

    # then
    assert len(combos) == 12
    assert combos[:2] == [{"alpha": 0.1, "seed": 1}, {"alpha": 0.1, "seed": 2}]
    assert combos[-1] == {"alpha": 0.5, "seed": 4}
    assert len({tuple(c.items()) for c in combos}) == 12


# ---------------------------------------------------------------------- file names
def test_output_notebooks_are_named_by_their_parameters():
    assert output_name("NB", {"alpha": 0.1, "seed": 1}) == "NB-alpha=0.1-seed=1.ipynb"


def test_output_names_are_safe_file_names():
    # given: values with a slash, spaces and a leading dot
    name = output_name("NB", {"path": "../etc/passwd", "label": "a b"})

    # then: one file in the output folder
    assert "/" not in name and " " not in name
    assert name == "NB-path=.._etc_passwd-label=a_b.ipynb"
    assert Path("out", name).parent == Path("out")


def test_a_long_name_is_cut_and_kept_unique():
    # given
    a = output_name("NB", {"text": "x" * 300, "seed": 1})
    b = output_name("NB", {"text": "x" * 300, "seed": 2})

    # then
    assert len(a.encode()) <= 255 and len(b.encode()) <= 255
    assert a != b


def test_colliding_safe_names_get_a_suffix():
    # given: "a b" and "a_b" make the same safe name
    paths = output_paths(Path("out"), "NB", [{"s": "a b"}, {"s": "a_b"}])

    # then
    assert [p.name for p in paths] == ["NB-s=a_b.ipynb", "NB-s=a_b-2.ipynb"]


# ---------------------------------------------------------------------- the HPA rule
@pytest.mark.parametrize(
    ("current", "utils", "target", "expected", "why"),
    [
        (1, [1.0], 0.8, 2, "ceil(1.0 / 0.8) = ceil(1.25) = 2"),
        (2, [1.0, 1.0], 0.8, 3, "ceil(2.0 / 0.8) = ceil(2.5) = 3"),
        (4, [1.0, 1.0, 1.0, 1.0], 0.5, 8, "ceil(4.0 / 0.5) = 8"),
        (3, [0.2, 0.2, 0.2], 0.8, 1, "ceil(0.6 / 0.8) = 1: scale down"),
        (2, [0.85, 0.85], 0.8, 2, "ratio 1.0625 within the 0.1 tolerance: no change"),
        (20, [0.76] * 20, 0.8, 20, "ratio 0.95 within the tolerance: no change (ceil(15.2 / 0.8) would be 19)"),
        (20, [0.84] * 20, 0.8, 20, "ratio 1.05 within the tolerance: no change (ceil(16.8 / 0.8) would be 21)"),
        (20, [0.9] * 20, 0.8, 23, "ratio 1.125 beyond the tolerance: ceil(18 / 0.8) = ceil(22.5) = 23"),
        (2, [0.9, 0.9], 0.8, 3, "ratio 1.125 beyond the tolerance: ceil(1.8 / 0.8) = 3"),
        (2, [None, None], 0.8, 2, "nothing measured: no change"),
    ],
)
def test_hpa_desired_replicas(current, utils, target, expected, why):
    assert hpa_desired(current, utils, target) == expected, why


def test_jobs_without_a_figure_count_as_idle_on_a_scale_up():
    # given: one job at 200 % of its CPUs (a limit of 0.5 CPU, 1 CPU busy), one not measured yet
    # when: ratio 2.0/0.8 = 2.5 > 1, the missing one counts 0: (2.0 + 0) / 2 / 0.8 = 1.25
    desired = hpa_desired(2, [2.0, None], 0.8)

    # then: ceil(1.25 × 2) = 3
    assert desired == 3


def test_jobs_without_a_figure_count_as_full_on_a_scale_down():
    # given: one job idle, two not measured
    # when: the ratio 0 < 1, the missing ones count 100 %: (0 + 1 + 1) / 3 / 0.8 = 0.833
    # then: ceil(0.833 × 3) = 3: no change (never above the current count on a scale-down)
    assert hpa_desired(3, [0.0, None, None], 0.8) == 3
    # and with one of three missing: (0 + 0 + 1) / 3 / 0.8 = 0.4167 -> ceil(1.25) = 2
    assert hpa_desired(3, [0.0, 0.0, None], 0.8) == 2


def test_filling_in_that_reverses_the_direction_changes_nothing():
    # given: measured 0.9 each (ratio 1.125, up); two missing as 0 gives (0.9+0.9)/4/0.8 = 0.5625 < 1
    assert hpa_desired(4, [0.9, 0.9, None, None], 0.8) == 4


def test_a_target_utilization_of_zero_is_an_error():
    with pytest.raises(ValueError):
        hpa_desired(1, [0.5], 0)


# ---------------------------------------------------------------------- bounds
def node(name: str, cpus: float, memory: int, gpus: int = 0, state: str = "ready") -> NodeInfo:
    return NodeInfo(name=name, address=None, cpus=cpus, memory=memory, gpus=gpus, state=state, labels={})


def test_capacity_packs_each_node_separately():
    # given: three nodes, jobs of 1.5 CPUs and 1 GiB
    nodes = [node("a", 4, 8 * GiB), node("b", 2, 8 * GiB), node("c", 8, 2 * GiB)]

    # then: a holds 2 (CPU), b 1 (CPU), c 2 (memory): 5, not 14 CPUs // 1.5 = 9
    assert capacity(nodes, Resources(cpus=1.5, memory=GiB)) == 5


def test_capacity_counts_gpus_and_skips_nodes_that_are_down():
    nodes = [node("a", 16, 64 * GiB, gpus=2), node("b", 16, 64 * GiB, gpus=2, state="down")]
    assert capacity(nodes, Resources(gpus=1)) == 2
    assert capacity(nodes, Resources(gpus=3)) == 0


def test_a_job_that_requests_nothing_is_not_bounded_by_the_nodes():
    assert capacity([node("a", 2, GiB)], Resources()) is None


@pytest.mark.parametrize(
    ("desired", "max_parallel", "cap", "pending", "running", "expected"),
    [
        (10, 4, None, 20, 2, 4),  # the maximum
        (10, 8, 3, 20, 2, 3),  # what the nodes hold
        (10, 8, 0, 20, 0, 1),  # fits nowhere: still one, so that the backend says why
        (10, 8, None, 1, 2, 3),  # no more than there is to run
        (0, 8, None, 5, 0, 1),  # at least one
    ],
)
def test_bounds(desired, max_parallel, cap, pending, running, expected):
    assert bounded(desired, max_parallel=max_parallel, capacity=cap, pending=pending, running=running) == expected


# ---------------------------------------------------------------------- summary
def test_summary_table_has_parameters_status_time_and_output():
    # given
    jobs = [
        SweepJob(0, {"alpha": 0.1, "model": "vit"}, Path("out/NB-alpha=0.1-model=vit.ipynb"), "completed", 3.25),
        SweepJob(1, {"alpha": 0.2, "model": "vit"}, Path("out/NB-alpha=0.2-model=vit.ipynb"), "failed", 1.0),
    ]

    # when
    rows = summary_rows(jobs)

    # then
    assert rows[0] == ["alpha", "model", "STATUS", "TIME", "OUTPUT"]
    assert rows[1] == ["0.1", "'vit'", "completed", "3.2s", "out/NB-alpha=0.1-model=vit.ipynb"]
    assert rows[2][2] == "failed"


# ---------------------------------------------------------------------- a sweep as data (REST)
def test_a_sweep_given_as_data_means_what_the_command_line_means():
    # given the same sweep as an object (lists and the --sweep grammar) and as the command line's text
    as_object = sweep_axes({"alpha": [0.1, 0.2], "seed": "1..3"})
    as_text = sweep_axes(["alpha=0.1,0.2", "seed=1..3"])
    # then both are the command line's axes
    assert as_object == as_text == parse_sweeps(["alpha=0.1,0.2", "seed=1..3"])
    assert sweep_axes("word=a,b") == [("word", ["a", "b"])]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"n": []}, "sweep.n: give at least one value"),
        ({"n": "1..x"}, "sweep.n '1..x': '1..x' is not a range of whole numbers"),
        ({"n": 5}, "sweep.n: 5 is not a list of values"),
        ({"a b": [1]}, "sweep: parameter name 'a b' is not a Python variable name"),
        ({}, "sweep: give at least one parameter"),
        (["n=1", "n=2"], "sweep[1] 'n=2': n is swept twice"),
        ([3], "sweep[0]: 3 is not NAME=VALUES text"),
        (None, "sweep: give an object of parameter names"),
        ({"fixed": [1]}, "sweep.fixed: fixed is also given as a fixed value in parameters"),
        ({"a": "1..1000", "b": "1..1000"}, "sweep: 1000 × 1000 = 1000000 combinations"),
    ],
)
def test_a_bad_sweep_given_as_data_is_refused_naming_the_field(value, message):
    with pytest.raises(RequestError) as caught:
        sweep_axes(value, fixed={"fixed": 0})
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ((0, 1, 0.8), "max_parallel: 0 is not a number of jobs"),
        ((True, 1, 0.8), "max_parallel: True is not a number of jobs"),
        ((2, 3, 0.8), "min_parallel: 3 must be between 1 and max_parallel (2)"),
        ((2, "1", 0.8), "min_parallel: '1' is not a number of jobs"),
        ((2, 1, 0), "target_utilization: 0 is not a utilization"),
        ((2, 1, "high"), "target_utilization: 'high' is not a utilization"),
    ],
)
def test_the_rule_bounds_are_checked_under_the_callers_names(options, message):
    with pytest.raises(RequestError) as caught:
        check_options(*options, names=("max_parallel", "min_parallel", "target_utilization"))
    assert message in str(caught.value)
