"""Per-call shortcuts of the embedded gateway, and that they keep their limits: the size bound
that spares encoding an upstream answer twice, the guard without a timer for a step that
declares itself bounded, and a lone caller's commit at its barrier."""

from __future__ import annotations

import asyncio

import mcp_types as types

from core.bindings import ExecutionOutcome, ToolCall
from core.group_commit import GroupCommit
from core.guard import GuardedStep
from core.plans import PlannedAction
from gateway.tools import _size_bound


def _text(*texts: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=t) for t in texts], is_error=False)


def test_the_size_bound_is_never_below_the_encoded_size() -> None:
    cases = [
        _text(""),
        _text("plain"),
        _text('quotes " and \\ backslashes' * 50),
        _text("\x00\x01\x1f control characters" * 100),
        _text("é ü 中文 😀 astral" * 100, "a second item"),
    ]
    for result in cases:
        bound = _size_bound(result)
        assert bound is not None
        assert bound >= len(result.model_dump_json(by_alias=True, exclude_none=True).encode("utf-8"))


def test_anything_but_plain_text_content_is_measured_exactly() -> None:
    structured = types.CallToolResult(
        content=[types.TextContent(type="text", text="x")], structured_content={"a": "b" * 100}, is_error=False
    )
    image = types.CallToolResult(
        content=[types.ImageContent(type="image", data="QUJD", mime_type="image/png")], is_error=False
    )
    assert _size_bound(structured) is None
    assert _size_bound(image) is None


class _Slow:
    def __init__(self, bounded: bool) -> None:
        if bounded:
            self.bounded = True

    async def __call__(self, call: ToolCall) -> ExecutionOutcome:
        await asyncio.sleep(0.3)
        return ExecutionOutcome(success=True, duration_ms=0.0, output={}, simulated=False)


async def test_only_a_step_that_declares_itself_bounded_runs_without_the_guards_timer() -> None:
    action = PlannedAction(id="a1", agent="a", tool="t", confidence=0.9)
    call = ToolCall("p", action, "a", 1)
    timed = await GuardedStep(_Slow(bounded=False), "MOCK", 0.05, False, False)(call)
    assert not timed.success and timed.timed_out
    trusted = await GuardedStep(_Slow(bounded=True), "MOCK", 0.05, False, False)(call)
    assert trusted.success


async def test_a_lone_caller_commits_at_its_barrier_and_concurrent_callers_share_one_commit() -> None:
    alone = [True]
    commits: list[int] = []
    group = GroupCommit(lambda: commits.append(len(commits)), alone=lambda: alone[0])
    await group.barrier()
    assert commits == [0]  # at once, in the call
    alone[0] = False
    await asyncio.gather(group.barrier(), group.barrier(), group.barrier())
    assert commits == [0, 1]  # three waiters, one commit
