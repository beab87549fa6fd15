"""Bearer tokens and roles: stored hashed (SHA-256) in a 0600 file, compared in constant time.

Three roles: an `agent` token is bound to one agent name (it may propose for that name and
report outcomes of its own grants, nothing else); a `viewer` watches; an `operator` watches
and commands (decide, lock, unlock, pause, resume).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from core.errors import ConfigError

Role = Literal["agent", "operator", "viewer"]
ROLES: tuple[Role, ...] = ("agent", "operator", "viewer")
TOKENS_FILE = "tokens.json"
TOKEN_PREFIX = "p24_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request comes from."""

    name: str
    role: Role

    @property
    def can_watch(self) -> bool:
        return self.role in ("viewer", "operator")

    @property
    def can_command(self) -> bool:
        return self.role == "operator"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def add_token(path: Path, role: str, name: str) -> str:
    """Create a token for `name` with `role`, store its hash in `path` (mode 0600); return the token."""
    if role not in ROLES:
        raise ConfigError(f"--role: must be one of {', '.join(ROLES)}, got {role!r}")
    if not _NAME.match(name):
        raise ConfigError(f"NAME: {name!r} must be 1-128 letters, digits or _.:- (an agent's name for agent tokens)")
    entries = _load(path)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    entries.append(
        {
            "name": name,
            "role": role,
            "sha256": _digest(token).hex(),
            "created": datetime.now(UTC).isoformat(),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(json.dumps({"tokens": entries}, indent=2) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return token


def _load(path: Path) -> list[dict[str, str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable token file ({exc})") from None
    tokens = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(tokens, list):
        raise ConfigError(f"{path}: field tokens: expected a list")
    for index, entry in enumerate(tokens):
        ok = (
            isinstance(entry, dict)
            and entry.get("role") in ROLES
            and isinstance(entry.get("name"), str)
            and isinstance(entry.get("sha256"), str)
            and re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]) is not None
        )
        if not ok:
            raise ConfigError(f"{path}: field tokens[{index}]: needs name, role ({'/'.join(ROLES)}) and sha256")
    return tokens


class TokenStore:
    """The service's view of the token file; re-read when the file changes (`phase24 token add`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._entries: list[tuple[bytes, Principal]] = []
        self._reload()

    def _reload(self) -> None:
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            stamp = (0, 0)
        if stamp == self._stamp:
            return
        self._entries = [
            (bytes.fromhex(e["sha256"]), Principal(e["name"], e["role"]))  # type: ignore[arg-type]
            for e in _load(self.path)
        ]
        self._stamp = stamp

    def __len__(self) -> int:
        return len(self._entries)

    def authenticate(self, token: str) -> Principal | None:
        """The token's principal, or None. Every stored hash is compared (constant time each)."""
        try:
            self._reload()
        except ConfigError:
            pass  # a half-edited file: keep the tokens loaded before
        digest = _digest(token)
        found: Principal | None = None
        for stored, principal in self._entries:
            if hmac.compare_digest(stored, digest):
                found = principal
        return found
