"""An example executor plugin: agents may sign a guestbook, for real, once a human approves."""

from pathlib import Path
from typing import Any

from core.bindings import EffectNotApplied, ToolBinding, ToolCall
from core.contracts import RiskLevel, ToolContract
from core.function_binding import function_binding
from core.plugins import ExecutorPlugin, PluginContext


def sign_guestbook(book: Path, name: str, message: str) -> int:
    """Your own function: append one signature, return how many the book holds."""
    book.parent.mkdir(parents=True, exist_ok=True)
    with book.open("a", encoding="utf-8") as fh:
        fh.write(f"{name}: {message}\n")
    return len(book.read_text(encoding="utf-8").splitlines())


SIGN = ToolContract(
    name="guestbook_sign",
    description="Sign the guestbook (a signature cannot be taken back)",
    risk_level=RiskLevel.HIGH,  # HIGH: every LIVE signature waits for the operator
    reversible=False,
    requires_approval=True,
)


def bind(ctx: PluginContext) -> list[ToolBinding]:
    book = ctx.path("book", "guestbook.txt")  # relative to OUT/world

    def check(call: ToolCall) -> dict[str, Any]:  # MOCK and DRY_RUN: validate, touch nothing
        name, message = call.args.get("name"), call.args.get("message")
        if not isinstance(name, str) or not isinstance(message, str) or "\n" in name + message:
            raise EffectNotApplied("args.name and args.message: one line of text each")
        return {"would_sign_as": name, "book": str(book)}

    def live(call: ToolCall) -> dict[str, Any]:
        check(call)
        return {"signatures": sign_guestbook(book, call.args["name"], call.args["message"])}

    return [function_binding("guestbook_sign", mock=check, dry_run=check, live=live, backend="guestbook")]


plugin = ExecutorPlugin(name="guestbook", bind=bind, contracts=(SIGN,))
