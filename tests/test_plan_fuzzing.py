"""Property-based fuzzing of the plan loader: arbitrary bytes in, a plan list or a PlanError out.

`core.plans.load_plan_file` must never crash on what an operator (or an attacker) puts in a
plan file: every outcome is either a list of validated plans or a `PlanError` whose message
starts with the file's path (and, for validation problems, names the field). The CLI must
turn every such error into exit code 2 and one `phase24: error:` line, never a traceback.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from console.cli import main
from core.canonical import loads_strict
from core.contracts import standard_registry
from core.errors import PlanError
from core.plans import MAX_PLAN_BYTES, ToolExecutionPlan, load_plan_file

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_FILES = ("happy_path.json", "approvals.json", "conflicts.json", "rollback.json")
SAMPLES = {name: (ROOT / "sample_plans" / name).read_bytes() for name in SAMPLE_FILES}
REGISTRY = standard_registry()

FIELD_NAMES = (
    "plan_id",
    "actions",
    "id",
    "agent",
    "tool",
    "args",
    "confidence",
    "depends_on",
    "resource",
    "simulate",
    "agents",
    "permissions",
    "execution_order",
    "agent_assignments",
    "confidence_scores",
    "phase21_plan_id",
    "phase22_validation_id",
    "latency_ms",
    "fail_in",
    "timeout_in",
    "plans",
    "description",
    "timeout_attempts",
    "fail_on_call",
    "compensation_fails",
)

FUZZ_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --------------------------------------------------------------- strategies

nasty_strings = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "\x1b[31mred\x1b[0m",
        "\u202egnp.exe",
        "\u2066iso\u2069",
        "a\r\nb",
        "\t",
        "\x7f\x85\x9b",
        "é😀",
        "\ufeff",
        "\uffff",
        "x" * 5000,
        "MOCK",
        "DRY_RUN",
        "LIVE",
        "NaN",
        "step1",
        "a",
    ]
)
strings = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=16),
    nasty_strings,
    st.sampled_from(REGISTRY.names),
    st.sampled_from(FIELD_NAMES),
)
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**300), max_value=10**300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 0.5, 0.85, 1.0000001, 2**63, -(2**63), 1e308, -0.0, math.nan, math.inf, -math.inf]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, strings)
keys = st.one_of(st.sampled_from(FIELD_NAMES), strings)

json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(keys, children, max_size=6),
    ),
    max_leaves=40,
)


@st.composite
def plan_like(draw: st.DrawFn) -> Any:
    """Something close to a real plan, with random values in random fields."""

    def maybe(value_strategy: st.SearchStrategy[Any], real: Any) -> Any:
        return draw(st.one_of(st.just(real), value_strategy))

    actions = []
    for i in range(draw(st.integers(min_value=0, max_value=4))):
        action: dict[str, Any] = {
            "id": maybe(json_values, f"a{i}"),
            "agent": maybe(json_values, draw(st.sampled_from(["x", "y"]))),
            "tool": maybe(json_values, draw(st.sampled_from(REGISTRY.names))),
            "confidence": maybe(json_values, draw(st.floats(min_value=0, max_value=1))),
        }
        for extra, real in (
            ("args", {"k": i}),
            ("depends_on", [f"a{i - 1}"] if i else []),
            ("resource", "r"),
            ("simulate", {"latency_ms": 5, "fail_in": ["LIVE"], "timeout_in": []}),
        ):
            if draw(st.booleans()):
                action[extra] = maybe(json_values, real)
        if draw(st.booleans()):
            action[draw(keys)] = draw(json_values)
        actions.append(action)
    plan: dict[str, Any] = {"plan_id": maybe(json_values, "p1"), "actions": actions}
    for extra, real in (
        ("agents", {"x": {"permissions": ["crm.read"]}}),
        ("execution_order", ["math_compute", "form_fill"]),
        ("agent_assignments", {"x": ["math_compute"]}),
        ("confidence_scores", {"math_compute": 0.9}),
        ("phase21_plan_id", "p21"),
        ("phase22_validation_id", "v22"),
    ):
        if draw(st.booleans()):
            plan[extra] = maybe(json_values, real)
    return draw(st.sampled_from([plan, [plan], {"plans": [plan]}, [plan, plan]]))


def _paths(value: Any) -> list[list[Any]]:
    """Every path (list of keys/indices) to a value inside `value`."""
    out: list[list[Any]] = []

    def walk(node: Any, path: list[Any]) -> None:
        out.append(path)
        if isinstance(node, dict):
            for key, child in node.items():
                walk(child, [*path, key])
        elif isinstance(node, list):
            for index, child in enumerate(node):
                walk(child, [*path, index])

    walk(value, [])
    return out


def _parent(root: Any, path: list[Any]) -> Any:
    node = root
    for part in path[:-1]:
        node = node[part]
    return node


@st.composite
def mutated_samples(draw: st.DrawFn) -> bytes:
    """A real sample plan, damaged: a field deleted or retyped, bytes cut or inserted."""
    raw = SAMPLES[draw(st.sampled_from(SAMPLE_FILES))]
    how = draw(st.sampled_from(["delete", "retype", "truncate", "insert", "splice_nesting"]))
    if how in ("delete", "retype"):
        data = json.loads(raw)
        paths = [p for p in _paths(data) if p]
        path = draw(st.sampled_from(paths))
        parent = _parent(data, path)
        if how == "delete":
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(json_values)
        return json.dumps(data).encode("utf-8")
    if how == "truncate":
        return raw[: draw(st.integers(min_value=0, max_value=len(raw)))]
    offset = draw(st.integers(min_value=0, max_value=len(raw)))
    if how == "insert":
        return raw[:offset] + draw(st.binary(min_size=1, max_size=16)) + raw[offset:]
    depth = draw(st.integers(min_value=1, max_value=5000))
    return raw[:offset] + b"[" * depth + raw[offset:]


deep_nesting = st.one_of(
    st.builds(lambda n: b"[" * n, st.sampled_from([100, 1000, 100_000])),
    st.builds(lambda n: b"[" * n + b"]" * n, st.sampled_from([100, 900, 1000, 100_000])),
    st.builds(lambda n: b'{"a":' * n + b"1" + b"}" * n, st.sampled_from([100, 1000, 100_000])),
    st.builds(
        lambda n: (
            b'{"plan_id": "p", "actions": [{"id": "a", "agent": "x", "tool": "math_compute", '
            b'"confidence": 0.9, "args": {"k": ' + b"[" * n + b"]" * n + b"}}]}"
        ),
        st.sampled_from([10, 500, 900, 5000, 100_000]),
    ),
)


def _encode(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True, ensure_ascii=False).encode("utf-8")


file_contents = st.one_of(
    st.builds(_encode, json_values),
    st.builds(_encode, plan_like()),
    mutated_samples(),
    deep_nesting,
    st.binary(max_size=64),
)

# --------------------------------------------------------------- the property


def check_load(path: Path, content: bytes) -> list[ToolExecutionPlan] | PlanError:
    """Load `path`; the only acceptable outcomes are a list of plans or a well-formed PlanError."""
    path.write_bytes(content)
    try:
        plans = load_plan_file(path, REGISTRY)
    except PlanError as exc:
        message = str(exc)
        assert message.startswith(f"{path}: "), message[:300]
        assert exc.path == str(path)
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        try:
            decoded = loads_strict(content.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return exc  # not JSON at all (NaN and Infinity are not JSON): no field to name
        if isinstance(decoded, dict | list) and "nested too deeply" not in message:
            assert "field " in message, message[:300]
        return exc
    assert isinstance(plans, list)
    assert all(isinstance(p, ToolExecutionPlan) for p in plans)
    for p in plans:
        assert p.actions, "a loaded plan always has at least one action"
        assert all(a.tool in REGISTRY for a in p.actions)
    return plans


@FUZZ_SETTINGS
@given(content=file_contents)
@example(content=b"")
@example(content=b"\xff\xfe\x00")
@example(content=b"[" * 100_000)
@example(content=b'{"a":' * 100_000)
@example(content=b"null")
@example(content=b"NaN")
@example(content=b"[]")
@example(content=b'{"plans": 5}')
@example(content=b'{"plan_id": "p", "execution_order": ["math_compute", 5]}')
@example(content=b'{"plan_id": "p", "execution_order": ["math_compute"], "agent_assignments": {"x": 5}}')
@example(content=b'{"plan_id": "p", "actions": [{"id": "a", "agent": "x", "tool": "nope", "confidence": 1}]}')
@example(content=SAMPLES["happy_path.json"][:-3])
def test_loader_returns_plans_or_plan_error(tmp_path: Path, content: bytes) -> None:
    check_load(tmp_path / "plan.json", content)


@FUZZ_SETTINGS
@given(value=json_values)
def test_arbitrary_json_values_are_refused_or_loaded(tmp_path: Path, value: Any) -> None:
    outcome = check_load(tmp_path / "plan.json", _encode(value))
    if not isinstance(value, dict | list):
        assert isinstance(outcome, PlanError)
        if isinstance(value, float) and not math.isfinite(value):
            assert "is not a JSON number" in str(outcome) or "too large for a finite float" in str(outcome)
        else:
            assert "top level must be an object or a list" in str(outcome)


def test_sample_plans_still_load(tmp_path: Path) -> None:
    for name, raw in SAMPLES.items():
        plans = check_load(tmp_path / name, raw)
        assert isinstance(plans, list) and len(plans) == 1


def test_deep_nesting_is_a_plan_error(tmp_path: Path) -> None:
    for content in (b"[" * 100_000, b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 100_000):
        outcome = check_load(tmp_path / "deep.json", content)
        assert isinstance(outcome, PlanError)
        assert "nested too deeply" in str(outcome) or "not valid JSON" in str(outcome)


def test_file_over_the_size_limit_is_refused_by_size(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    with open(path, "wb") as fh:
        fh.truncate(MAX_PLAN_BYTES + 1)  # sparse: no 64 MiB written
    with pytest.raises(PlanError) as info:
        load_plan_file(path, REGISTRY)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert f"file is {MAX_PLAN_BYTES + 1} bytes" in message
    assert str(MAX_PLAN_BYTES) in message


def test_file_exactly_at_the_limit_is_read_not_refused_by_size(tmp_path: Path) -> None:
    path = tmp_path / "limit.json"
    with open(path, "wb") as fh:
        fh.truncate(MAX_PLAN_BYTES)  # NUL bytes: valid UTF-8, invalid JSON
    with pytest.raises(PlanError) as info:
        load_plan_file(path, REGISTRY)
    assert "bytes, larger than" not in str(info.value)
    assert "not valid JSON" in str(info.value)


HUGE_INT_PLAN = (
    b'{"plan_id": "p", "actions": [{"id": "a", "agent": "x", "tool": "math_compute", "confidence": '
    + b"9" * 5000
    + b"}]}"
)


def test_integer_literal_over_4300_digits_is_a_plan_error(tmp_path: Path) -> None:
    outcome = check_load(tmp_path / "bigint.json", HUGE_INT_PLAN)
    assert isinstance(outcome, PlanError)


# --------------------------------------------------------------------- CLI


def run_cli(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    with tempfile.TemporaryDirectory() as out:
        code = main(["run", str(path), "--out", str(Path(out) / "run")])
        assert not (Path(out) / "run").exists(), "a refused plan must not create the output directory"
    captured = capsys.readouterr()
    return code, captured.err


def assert_one_error_line(code: int, err: str, path: Path) -> None:
    assert code == 2
    assert "Traceback" not in err
    assert err.startswith("phase24: error: ")
    assert err.endswith("\n") and err.count("\n") == 1, err[:300]
    assert str(path) in err


@settings(
    max_examples=8,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(content=file_contents)
def test_cli_reports_bad_plans_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes) -> None:
    path = tmp_path / "plan.json"
    outcome = check_load(path, content)
    assume(isinstance(outcome, PlanError))
    code, err = run_cli(path, capsys)
    assert_one_error_line(code, err, path)


@pytest.mark.parametrize(
    "content",
    [b"", b"[" * 100_000, b"\xff", b'{"plan_id": "p", "actions": []}', SAMPLES["approvals.json"][:100]],
    ids=["empty", "deep", "not-utf8", "no-actions", "truncated"],
)
def test_cli_bad_plan_examples(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes) -> None:
    path = tmp_path / "plan.json"
    path.write_bytes(content)
    code, err = run_cli(path, capsys)
    assert_one_error_line(code, err, path)


def test_cli_huge_file_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "huge.json"
    with open(path, "wb") as fh:
        fh.truncate(MAX_PLAN_BYTES + 1)
    code, err = run_cli(path, capsys)
    assert_one_error_line(code, err, path)
    assert str(MAX_PLAN_BYTES + 1) in err


def test_cli_huge_integer_literal_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bigint.json"
    path.write_bytes(HUGE_INT_PLAN)
    code, err = run_cli(path, capsys)
    assert_one_error_line(code, err, path)
