"""The options `phase24 console` (with plans, without, or attached) and `phase24 replay`
share: the keys file, the bell and the desktop notification; and the approval prompt's
arming delay, for every console that shows prompts."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from textual.app import App


def add_console_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keys",
        type=Path,
        metavar="FILE",
        help='a TOML keys file ([keys] lock = "ctrl+k"); default $XDG_CONFIG_HOME/phase24/keys.toml if present',
    )
    parser.add_argument("--no-bell", action="store_true", help="do not ring the terminal bell on an approval request")
    parser.add_argument(
        "--desktop-notify",
        action="store_true",
        help="also send a desktop notification on an approval request (notify-send, if on PATH)",
    )


def load_console_keymap(args: argparse.Namespace, app_class: type[App[Any]]) -> dict[str, str]:
    """The validated keymap (KeymapError, exit 2, for a bad one): before anything starts."""
    from console.keymap import default_keys_path, load_keymap

    given = getattr(args, "keys", None)
    return load_keymap(given or default_keys_path(), app_class, required=given is not None)


def apply_console_options(app: Any, args: argparse.Namespace, keymap: dict[str, str]) -> None:
    app.use_keymap(keymap)
    app.notice.bell = not getattr(args, "no_bell", False)
    app.notice.desktop = bool(getattr(args, "desktop_notify", False))


def add_arm_delay_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--arm-delay",
        type=arm_delay_seconds,
        default=None,
        metavar="S",
        help="seconds an approval prompt must be on screen, with no answer key pressed, before it accepts one"
        " (default 0.6, at least 0.3)",
    )


def arm_delay_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0.3 <= value <= 10:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"expected 0.3 to 10 seconds, got {text!r}")
    return value


def arm_delay_of(args: argparse.Namespace) -> float:
    """`--arm-delay`, or the default (the console's own: at least 0.3 s, checked by the parser)."""
    from console.approval_prompt import DEFAULT_ARM_DELAY_S

    given = getattr(args, "arm_delay", None)
    return DEFAULT_ARM_DELAY_S if given is None else float(given)
