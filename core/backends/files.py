"""The files backend: `file_operation`, `form_fill` and `text_extract` write under one root.

Every path is checked before any effect: relative, no `..`, and (after following every
symlink that exists) still inside the root; anything else is refused. Writes are atomic
(a temporary file, then a rename). A LIVE write remembers the previous content, so
rollback restores it (or removes a file the write created).

Settings (`[executors.files]`): `root` (default "files", relative to the run's world
directory), `tools` (default all three).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from core.bindings import EffectNotApplied, ToolBinding, ToolCall
from core.contracts import RiskLevel, ToolContract
from core.errors import ConfigError
from core.function_binding import function_binding
from core.plugins import ExecutorPlugin, PluginContext

BACKEND = "files"
MAX_CONTENT_CHARS = 10_000_000

#: With this backend a file operation can be undone (the previous content is kept).
FILE_OPERATION = ToolContract(
    name="file_operation",
    description="Write, append to or delete a file under the files backend's root (restorable)",
    risk_level=RiskLevel.HIGH,
    reversible=True,
    requires_approval=True,
    required_permissions=("files.write",),
    max_concurrency=2,
)


class FileRoot:
    """One root directory; `resolve` refuses every path that would leave it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def resolve(self, rel: object, field: str = "path") -> Path:
        if not isinstance(rel, str) or not rel.strip():
            raise EffectNotApplied(f"args.{field}: expected a relative path, got {rel!r}")
        if "\x00" in rel or "\\" in rel:
            raise EffectNotApplied(f"args.{field}: {rel!r} holds a NUL or a backslash")
        pure = PurePosixPath(rel)
        if pure.is_absolute():
            raise EffectNotApplied(f"args.{field}: {rel!r} is absolute; paths are relative to the files root")
        if ".." in pure.parts:
            raise EffectNotApplied(f"args.{field}: {rel!r} climbs out with '..'")
        self.root.mkdir(parents=True, exist_ok=True)
        real_root = self.root.resolve(strict=True)
        target = (real_root / pure).resolve(strict=False)
        if target == real_root or not target.is_relative_to(real_root):
            raise EffectNotApplied(f"args.{field}: {rel!r} leads outside the files root (through a symlink)")
        return target

    def check(self, rel: object, field: str = "path") -> str:
        """Validate the path's shape only (MOCK: no file system access)."""
        if not isinstance(rel, str) or not rel.strip():
            raise EffectNotApplied(f"args.{field}: expected a relative path, got {rel!r}")
        pure = PurePosixPath(rel)
        if pure.is_absolute() or ".." in pure.parts or "\x00" in rel or "\\" in rel:
            raise EffectNotApplied(f"args.{field}: {rel!r} is not a plain relative path")
        return rel


def _read(path: Path) -> bytes | None:
    try:
        with open(path, "rb", opener=_nofollow) as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def _nofollow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".phase24-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _restore(path: Path, previous: bytes | None) -> None:
    if previous is None:
        path.unlink(missing_ok=True)
    else:
        _write_atomic(path, previous)


def _text(args: dict[str, Any], key: str) -> str:
    value = args.get(key, "")
    if not isinstance(value, str):
        raise EffectNotApplied(f"args.{key}: expected text, got {type(value).__name__}")
    if len(value) > MAX_CONTENT_CHARS:
        raise EffectNotApplied(f"args.{key}: more than {MAX_CONTENT_CHARS} characters")
    return value


# -- file_operation -------------------------------------------------------------------------

OPS = ("write", "append", "delete")


def _op(args: dict[str, Any]) -> str:
    op = args.get("op", "write")
    if op not in OPS:
        raise EffectNotApplied(f"args.op: expected one of {', '.join(OPS)}, got {op!r}")
    return str(op)


def _new_content(op: str, previous: bytes | None, content: str, rel: str) -> bytes | None:
    if op == "delete":
        if previous is None:
            raise EffectNotApplied(f"args.path: {rel!r} does not exist; nothing to delete")
        return None
    if op == "append":
        return (previous or b"") + content.encode("utf-8")
    return content.encode("utf-8")


class _Files:
    """The steps of the three tools over one root.

    Steps run in their own threads, so every read-modify-write of a LIVE step or an undo holds
    the root's lock: two agents filling one form at once never lose each other's field.
    """

    def __init__(self, root: FileRoot) -> None:
        self.root = root
        self._lock = threading.Lock()

    # file_operation
    def file_mock(self, call: ToolCall) -> dict[str, Any]:
        args = call.action.args
        return {"op": _op(args), "path": self.root.check(args.get("path")), "chars": len(_text(args, "content"))}

    def file_dry_run(self, call: ToolCall) -> dict[str, Any]:
        args = call.action.args
        op, rel = _op(args), str(args.get("path"))
        path = self.root.resolve(rel)
        previous = _read(path)
        _new_content(op, previous, _text(args, "content"), rel)
        return {"would": op, "path": rel, "exists": previous is not None, "size": len(previous or b"")}

    def file_live(self, call: ToolCall) -> dict[str, Any]:
        args = call.action.args
        op, rel = _op(args), str(args.get("path"))
        with self._lock:
            path = self.root.resolve(rel)
            previous = _read(path)
            new = _new_content(op, previous, _text(args, "content"), rel)
            _restore(path, new)
        return {"op": op, "path": rel, "size": len(new or b""), "_path": path, "_previous": previous}

    def undo(self, call: ToolCall, output: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            _restore(output["_path"], output["_previous"])
        return {"restored": output.get("path"), "existed": output["_previous"] is not None}

    # form_fill: one JSON object per form, one key per field
    def _form(self, args: dict[str, Any]) -> tuple[str, str, Any]:
        form, field = args.get("form", "form"), args.get("field")
        if not isinstance(form, str) or not isinstance(field, str) or not field:
            raise EffectNotApplied("args.form and args.field: expected text")
        value = args.get("value")
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise EffectNotApplied("args.value: not a JSON value") from None
        return f"forms/{form}.json", field, value

    def form_mock(self, call: ToolCall) -> dict[str, Any]:
        rel, field, _ = self._form(call.action.args)
        return {"form": self.root.check(rel), "field": field}

    def _form_current(self, path: Path, rel: str) -> tuple[bytes | None, dict[str, Any]]:
        previous = _read(path)
        try:
            data = json.loads(previous) if previous else {}
        except ValueError:
            raise EffectNotApplied(f"{rel}: not a JSON form; refusing to overwrite it") from None
        if not isinstance(data, dict):
            raise EffectNotApplied(f"{rel}: not a JSON object; refusing to overwrite it")
        return previous, data

    def form_dry_run(self, call: ToolCall) -> dict[str, Any]:
        rel, field, value = self._form(call.action.args)
        _, data = self._form_current(self.root.resolve(rel, "form"), rel)
        return {"would_set": field, "in": rel, "from": data.get(field), "to": value}

    def form_live(self, call: ToolCall) -> dict[str, Any]:
        rel, field, value = self._form(call.action.args)
        with self._lock:
            path = self.root.resolve(rel, "form")
            previous, data = self._form_current(path, rel)
            data[field] = value
            text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
            _write_atomic(path, text.encode("utf-8"))
        return {"set": field, "path": rel, "_path": path, "_previous": previous}

    # text_extract: store extracted text in the scratch area (a report file)
    def text_mock(self, call: ToolCall) -> dict[str, Any]:
        args = call.action.args
        return {"target": self.root.check(args.get("target"), "target"), "chars": len(_text(args, "text"))}

    def text_dry_run(self, call: ToolCall) -> dict[str, Any]:
        args = call.action.args
        path = self.root.resolve(args.get("target"), "target")
        return {"would_write": args.get("target"), "exists": path.exists(), "chars": len(_text(args, "text"))}

    def text_live(self, call: ToolCall) -> dict[str, Any]:
        args = call.action.args
        rel = str(args.get("target"))
        path = self.root.resolve(rel, "target")
        text = _text(args, "text")
        with self._lock:
            previous = _read(path)
            _write_atomic(path, text.encode("utf-8"))
        return {"path": rel, "chars": len(text), "_path": path, "_previous": previous}


def bindings_for(root: FileRoot, tools: list[str]) -> list[ToolBinding]:
    files = _Files(root)
    steps: dict[str, tuple[Callable[[ToolCall], Any], ...]] = {
        "file_operation": (files.file_mock, files.file_dry_run, files.file_live),
        "form_fill": (files.form_mock, files.form_dry_run, files.form_live),
        "text_extract": (files.text_mock, files.text_dry_run, files.text_live),
    }
    bindings = []
    for tool in tools:
        if tool not in steps:
            raise ConfigError(
                f"executors.files.tools: the files backend has no tool {tool!r} (it offers {', '.join(steps)})"
            )
        mock, dry_run, live = steps[tool]
        bindings.append(
            function_binding(tool, mock=mock, dry_run=dry_run, live=live, compensate=files.undo, backend=BACKEND)
        )
    return bindings


def _bind(ctx: PluginContext) -> list[ToolBinding]:
    root = FileRoot(ctx.path("root", "files"))
    return bindings_for(root, ctx.tools(("file_operation", "form_fill", "text_extract")))


PLUGIN = ExecutorPlugin(
    name=BACKEND,
    bind=_bind,
    contracts=(FILE_OPERATION,),
    description="files under one root directory (file_operation, form_fill, text_extract)",
)
