"""Named instances (one daemon per account): `ordergate --instance NAME` and systemd's ordergate@NAME.service.

An instance NAME reads its config from <config dir>/NAME.toml and keeps its state (state file, journal, paper
book, daemon lock, control socket) in <state root>/NAME. The defaults are the template unit's:
/etc/ordergate/NAME.toml and /var/lib/ordergate/NAME (StateDirectory=ordergate/%i); ORDERGATE_INSTANCE_CONFIG_DIR
and ORDERGATE_INSTANCE_STATE_ROOT move them (tests, a non-root install).
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path

from config.settings import INSTANCE_NAME_PATTERN

DEFAULT_CONFIG_DIR = Path("/etc/ordergate")
DEFAULT_STATE_ROOT = Path("/var/lib/ordergate")
_NAME = re.compile(INSTANCE_NAME_PATTERN)


@dataclass(frozen=True, slots=True)
class Instance:
    """Where one named instance's config and state live."""

    name: str
    config: Path
    state_dir: Path


def instance_name(text: str) -> str:
    """An argparse type: a lower-case instance name (letters, digits, '-', '_'; at most 40)."""
    if not _NAME.match(text):
        raise argparse.ArgumentTypeError(
            f"{text[:60]!r} is not an instance name: use 1-40 lower-case letters, digits, '-' or '_', "
            "starting with a letter or digit")
    return text


def resolve_instance(name: str, environ: dict[str, str] | None = None) -> Instance:
    """The config file and state directory of instance `name`."""
    env = os.environ if environ is None else environ
    config_dir = Path(env.get("ORDERGATE_INSTANCE_CONFIG_DIR") or DEFAULT_CONFIG_DIR)
    state_root = Path(env.get("ORDERGATE_INSTANCE_STATE_ROOT") or DEFAULT_STATE_ROOT)
    return Instance(instance_name(name), config_dir / f"{name}.toml", state_root / name)
