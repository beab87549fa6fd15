"""A real MCP server (stdio) for the gateway's tests and benchmark.

Tools:
- `lookup` (readOnlyHint): echoes its `key` back; no effect.
- `delete_record` (destructiveHint): appends "delete KEY" to the effects file.
- `append_line` (no annotations at all): appends its `line` to the effects file.
- `slow` (readOnlyHint): sleeps `seconds` before answering (a hang, for timeouts).
- `crash` (destructiveHint): the process exits at once, mid-call.
- `huge` (readOnlyHint): answers `size` bytes of text.

Every effect is one line appended (and fsynced) to the file named by $MCP_UPSTREAM_EFFECTS,
so a test counts exactly how many times upstream really acted. With $MCP_UPSTREAM_CALLS set,
every call's name and exact arguments are appended there too, one JSON line each.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import anyio
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

_OBJECT = {"type": "object"}


def _tools() -> list[types.Tool]:
    return [
        types.Tool(
            name="lookup",
            description="Look a key up (read-only).",
            input_schema={"type": "object", "properties": {"key": {"type": "string"}}, "required": ["key"]},
            annotations=types.ToolAnnotations(read_only_hint=True),
        ),
        types.Tool(
            name="delete_record",
            description="Delete a record (destructive).",
            input_schema={"type": "object", "properties": {"key": {"type": "string"}}, "required": ["key"]},
            annotations=types.ToolAnnotations(read_only_hint=False, destructive_hint=True),
        ),
        types.Tool(
            name="append_line",
            description="Append a line to the effects file (says nothing about itself).",
            input_schema={"type": "object", "properties": {"line": {"type": "string"}}, "required": ["line"]},
        ),
        types.Tool(
            name="slow",
            description="Answer after `seconds`.",
            input_schema={"type": "object", "properties": {"seconds": {"type": "number"}}},
            annotations=types.ToolAnnotations(read_only_hint=True),
        ),
        types.Tool(
            name="slow_delete",
            description="Delete a record, then take `seconds` to answer (destructive).",
            input_schema={"type": "object", "properties": {"key": {"type": "string"}, "seconds": {"type": "number"}}},
            annotations=types.ToolAnnotations(destructive_hint=True),
        ),
        types.Tool(
            name="crash",
            description="Exit the upstream process mid-call.",
            input_schema=_OBJECT,
            annotations=types.ToolAnnotations(destructive_hint=True),
        ),
        types.Tool(
            name="huge",
            description="Answer `size` bytes of text.",
            input_schema={"type": "object", "properties": {"size": {"type": "integer"}}},
            annotations=types.ToolAnnotations(read_only_hint=True),
        ),
    ]


def _effect(line: str) -> None:
    path = os.environ.get("MCP_UPSTREAM_EFFECTS")
    if not path:
        raise RuntimeError("MCP_UPSTREAM_EFFECTS is not set")
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def _text(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)])


async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
    return types.ListToolsResult(tools=_tools())


async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
    args = params.arguments or {}
    name = params.name
    calls = os.environ.get("MCP_UPSTREAM_CALLS")
    if calls:
        with open(calls, "a", encoding="utf-8") as f:
            f.write(json.dumps({"tool": name, "arguments": args}, sort_keys=True) + "\n")
    if name == "lookup":
        return _text(f"value of {args.get('key')}")
    if name == "delete_record":
        _effect(f"delete {args.get('key')}")
        return _text(f"deleted {args.get('key')}")
    if name == "append_line":
        _effect(str(args.get("line")))
        return _text("appended")
    if name == "slow":
        await asyncio.sleep(float(args.get("seconds", 60)))
        return _text("slow answer")
    if name == "slow_delete":
        _effect(f"delete {args.get('key')}")
        await asyncio.sleep(float(args.get("seconds", 60)))
        return _text(f"deleted {args.get('key')}")
    if name == "crash":
        _effect("crash called")
        os._exit(3)
    if name == "huge":
        return _text("x" * int(args.get("size", 1024)))
    return types.CallToolResult(content=[types.TextContent(type="text", text=f"unknown tool {name}")], is_error=True)


def make_server() -> Server[Any]:
    return Server("phase24-test-upstream", on_list_tools=list_tools, on_call_tool=call_tool)


async def main() -> None:
    server = make_server()
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def main_http(port: int) -> None:
    """The same tools over streamable HTTP at http://127.0.0.1:PORT/mcp."""
    import uvicorn

    uvicorn.run(make_server().streamable_http_app(), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    print("test upstream starting", file=sys.stderr)
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        main_http(int(sys.argv[2]))
    else:
        anyio.run(main)
