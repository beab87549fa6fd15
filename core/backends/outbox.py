"""The outbox backend: send-type tools deliver to a local SMTP server or an HTTP endpoint.

Irreversible: a sent message cannot be unsent, so there is no compensation. Every delivery
carries an idempotency key, the action's canonical LIVE hash (the one its approval and
journal intent are bound to), so a receiver can tell a repeat from a new message: SMTP
sends it as `Message-ID: <KEY@phase24>` and `X-Phase24-Idempotency-Key`, HTTP as the
`Idempotency-Key` header and in the JSON body.

Arguments of `msgraph_send_email` (SMTP): `to` (an address or a list), `subject`, `body`.
Over HTTP any send-type tool's arguments are POSTed as JSON.

MOCK checks the arguments' shape, DRY_RUN builds the message and reports where it would go
(no connection is made), LIVE delivers. A refused connection or recipient, or an HTTP 4xx,
is FAILED (nothing was delivered); anything else that goes wrong after the connection is
made leaves the outcome UNKNOWN.

Settings (`[executors.outbox]`): `transport` ("smtp" or "http"); SMTP: `host` (default
127.0.0.1), `port` (default 25), `sender` (default phase24@localhost); HTTP: `url`;
`timeout_s` (default 10); `tools` (default ["msgraph_send_email"]).
"""

from __future__ import annotations

import json
import smtplib
import urllib.error
import urllib.request
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate
from typing import Any

from core.bindings import EffectNotApplied, ToolBinding, ToolCall
from core.errors import ConfigError
from core.function_binding import function_binding
from core.plugins import ExecutorPlugin, PluginContext

BACKEND = "outbox"
KEY_HEADER = "X-Phase24-Idempotency-Key"
#: Headers are not folded, so the key reaches the receiver on one line (RFC 5322 allows 998 characters).
SMTP_POLICY = SMTP.clone(max_line_length=998)


def _recipients(args: dict[str, Any]) -> list[str]:
    to = args.get("to")
    addresses = [to] if isinstance(to, str) else to
    if not isinstance(addresses, list) or not addresses:
        raise EffectNotApplied("args.to: expected an address or a list of addresses")
    for address in addresses:
        if not isinstance(address, str) or "@" not in address or any(c in address for c in "\r\n<>,; "):
            raise EffectNotApplied(f"args.to: {address!r} is not an address")
    return addresses


def build_message(call: ToolCall, sender: str) -> EmailMessage:
    args = call.action.args
    subject, body = args.get("subject", ""), args.get("body", "")
    if not isinstance(subject, str) or not isinstance(body, str) or "\n" in subject or "\r" in subject:
        raise EffectNotApplied("args.subject and args.body: expected text (a subject on one line)")
    key = call.idempotency_key()
    message = EmailMessage(policy=SMTP_POLICY)
    message["From"] = sender
    message["To"] = ", ".join(_recipients(args))
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = f"<{key}@phase24>"
    message[KEY_HEADER] = key
    message.set_content(body)
    return message


class SmtpOutbox:
    def __init__(self, host: str, port: int, sender: str, timeout_s: float) -> None:
        self.host, self.port, self.sender, self.timeout_s = host, port, sender, timeout_s

    def mock(self, call: ToolCall) -> dict[str, Any]:
        return {"to": _recipients(call.action.args)}

    def dry_run(self, call: ToolCall) -> dict[str, Any]:
        message = build_message(call, self.sender)
        return {
            "would_send_to": message["To"],
            "via": f"smtp://{self.host}:{self.port}",
            "idempotency_key": message[KEY_HEADER],
        }

    def live(self, call: ToolCall) -> dict[str, Any]:
        message = build_message(call, self.sender)
        try:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        except OSError as exc:
            raise EffectNotApplied(f"cannot connect to smtp://{self.host}:{self.port}: {exc}") from None
        try:
            try:
                refused = client.send_message(message)
            except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused) as exc:
                raise EffectNotApplied(f"the SMTP server refused the message: {exc}") from None
        finally:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()
        return {
            "sent_to": message["To"],
            "refused": sorted(refused),
            "message_id": message["Message-ID"],
            "idempotency_key": message[KEY_HEADER],
        }


class HttpOutbox:
    def __init__(self, url: str, timeout_s: float) -> None:
        self.url, self.timeout_s = url, timeout_s

    def _payload(self, call: ToolCall) -> dict[str, Any]:
        return {
            "tool": call.action.tool,
            "plan_id": call.plan_id,
            "action_id": call.action.id,
            "agent": call.agent,
            "args": call.action.args,
            "idempotency_key": call.idempotency_key(),
        }

    def mock(self, call: ToolCall) -> dict[str, Any]:
        try:
            json.dumps(call.action.args)
        except (TypeError, ValueError):
            raise EffectNotApplied("args: not JSON") from None
        return {"tool": call.action.tool}

    def dry_run(self, call: ToolCall) -> dict[str, Any]:
        payload = self._payload(call)
        return {"would_post_to": self.url, "idempotency_key": payload["idempotency_key"]}

    def live(self, call: ToolCall) -> dict[str, Any]:
        payload = self._payload(call)
        request = urllib.request.Request(
            self.url,
            data=json.dumps(payload, sort_keys=True).encode("utf-8"),
            method="POST",
            headers={"Content-Type": "application/json", "Idempotency-Key": payload["idempotency_key"]},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            if 400 <= exc.code < 500:
                raise EffectNotApplied(f"{self.url} refused the delivery: HTTP {exc.code} {exc.reason}") from None
            raise
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ConnectionRefusedError):
                raise EffectNotApplied(f"cannot connect to {self.url}: {exc.reason}") from None
            raise
        return {"posted_to": self.url, "status": status, "idempotency_key": payload["idempotency_key"]}


def _bind(ctx: PluginContext) -> list[ToolBinding]:
    transport = ctx.setting("transport", str, "smtp")
    timeout = ctx.setting("timeout_s", float, 10.0)
    outbox: SmtpOutbox | HttpOutbox
    if transport == "smtp":
        port = ctx.setting("port", int, 25)
        if not 0 < port < 65536:
            raise ConfigError(f"executors.{ctx.plugin}.port: {port} is not a TCP port")
        outbox = SmtpOutbox(
            ctx.setting("host", str, "127.0.0.1"), port, ctx.setting("sender", str, "phase24@localhost"), timeout
        )
    elif transport == "http":
        url = ctx.setting("url", str)
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"executors.{ctx.plugin}.url: {url!r} is not an http(s) URL")
        outbox = HttpOutbox(url, timeout)
    else:
        raise ConfigError(f"executors.{ctx.plugin}.transport: expected 'smtp' or 'http', got {transport!r}")
    return [
        function_binding(tool, mock=outbox.mock, dry_run=outbox.dry_run, live=outbox.live, backend=BACKEND)
        for tool in ctx.tools(("msgraph_send_email",))
    ]


PLUGIN = ExecutorPlugin(
    name=BACKEND,
    bind=_bind,
    description="send-type tools deliver to a local SMTP server or an HTTP endpoint (msgraph_send_email)",
)
