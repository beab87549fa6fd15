"""Remappable keys: a TOML file's `[keys]` table moves the console's bindings (by their
Textual binding id) to other keys, e.g. `lock = "ctrl+k"`. Loaded from `--keys FILE`, else
`$XDG_CONFIG_HOME/phase24/keys.toml` (or `~/.config/phase24/keys.toml`) when it exists.

A keymap is refused as a whole, with a one-line error naming the file and the entry, when
it names an unknown binding, leaves lock without a key, gives one key to two actions, or
takes a key the approval prompt or the panes use themselves (approve `y` among them: the
prompt's keys cannot be moved, so no action can be put on them).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from textual.app import App
from textual.binding import Binding
from textual.keys import _character_to_key

from console.cli import BadInput

KEYS_FILE = "keys.toml"
# The approval prompt's own keys (approve, deny, deny with reason, deny and stop, edit, and
# its lock) and the keys the panes and dialogs use: never given to a remapped action.
RESERVED = {
    "y": "approve (approval prompt)",
    "n": "deny (approval prompt)",
    "r": "deny with a reason (approval prompt)",
    "s": "deny and stop (approval prompt)",
    "e": "edit the arguments (approval prompt)",
    "enter": "open a row / submit",
    "tab": "move the focus",
    "shift+tab": "move the focus",
    "up": "row cursor",
    "down": "row cursor",
    "pageup": "row cursor",
    "pagedown": "row cursor",
    "home": "scroll",
    "end": "follow",
    "ctrl+p": "command palette",
    "ctrl+c": "copy / interrupt",
}
KEY_PATTERN = re.compile(r"^((ctrl|shift|alt|super|meta)\+)*([A-Za-z0-9]|f([1-9]|1[0-9]|2[0-4])|[a-z_]{2,})$")
DISPLAY = {"question_mark": "?", "slash": "/", "period": ".", "plus": "+", "minus": "-", "escape": "Esc"}


class KeymapError(BadInput):
    """A keymap that cannot be used; the message is one line naming the file and entry."""


def default_keys_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME")
    return (Path(base) if base else Path.home() / ".config") / "phase24" / KEYS_FILE


def _bindings(app_class: type[App[Any]]) -> dict[str, Binding]:
    found: dict[str, Binding] = {}
    for cls in reversed(app_class.__mro__):
        for binding in getattr(cls, "BINDINGS", []) if "BINDINGS" in vars(cls) else []:
            if isinstance(binding, Binding) and binding.id:
                found[binding.id] = binding
    return found


def _normalise(key: str) -> str:
    key = key.strip()
    return _character_to_key(key) if len(key) == 1 else key


def validate(raw: Mapping[str, Any], app_class: type[App[Any]], where: str) -> dict[str, str]:
    """The keymap to give `App.set_keymap`, or KeymapError."""
    bindings = _bindings(app_class)
    keymap: dict[str, str] = {}
    for binding_id, value in raw.items():
        if binding_id == "approve":
            raise KeymapError(f"{where}: [keys] approve: the approval prompt's keys (y n r s e) cannot be remapped")
        if binding_id not in bindings:
            raise KeymapError(f"{where}: [keys] {binding_id}: no such binding (one of: {', '.join(sorted(bindings))})")
        if not isinstance(value, str):
            raise KeymapError(f'{where}: [keys] {binding_id}: expected a key as a string, e.g. "ctrl+k"')
        keys = [_normalise(k) for k in value.split(",") if k.strip()]
        if not keys:
            raise KeymapError(f"{where}: [keys] {binding_id}: no key given (every action keeps at least one)")
        for key in keys:
            if not KEY_PATTERN.match(key):
                raise KeymapError(f"{where}: [keys] {binding_id} = {value!r}: {key!r} is not a key name")
            if key in RESERVED:
                raise KeymapError(f"{where}: [keys] {binding_id} = {value!r}: {key} is reserved for {RESERVED[key]}")
        keymap[binding_id] = ",".join(keys)
    owner: dict[str, str] = {}
    for binding_id, binding in bindings.items():
        for key in keymap.get(binding_id, binding.key).split(","):
            other = owner.get(key)
            if other is not None and bindings[other].action != binding.action:
                raise KeymapError(f"{where}: [keys]: {key} would be both {other} and {binding_id}")
            owner[key] = binding_id
    if not keymap.get("lock", bindings["lock"].key):
        raise KeymapError(f"{where}: [keys] lock: the lock must keep a key")
    return keymap


def load_keymap(path: Path | None, app_class: type[App[Any]], *, required: bool) -> dict[str, str]:
    """Read and validate a keymap file; {} when none was asked for and the default is absent."""
    if path is None:
        return {}
    if not path.is_file():
        if required:
            raise KeymapError(f"{path}: no such keys file")
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise KeymapError(f"{path}: cannot read the keys file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise KeymapError(f"{path}: not valid TOML: {exc}") from None
    unknown = set(data) - {"keys"}
    if unknown:
        raise KeymapError(f"{path}: unknown table or key {sorted(unknown)[0]!r} (only [keys] is read)")
    keys = data.get("keys", {})
    if not isinstance(keys, dict):
        raise KeymapError(f"{path}: keys must be a table: [keys]")
    return validate(keys, app_class, str(path))


def display(keys: str) -> str:
    return ", ".join(DISPLAY.get(k, k) for k in keys.split(","))


def keys_in_force(app_class: type[App[Any]], keymap: Mapping[str, str]) -> dict[str, str]:
    """Binding id -> the keys that trigger it now (keymap applied), for the help overlay."""
    return {bid: display(keymap.get(bid, b.key)) for bid, b in _bindings(app_class).items()}
