"""Cloud Run's name limits, for the names Runback makes. Pure.

A revision name is a DNS label: lowercase letters, digits and hyphens, starting with a letter,
not ending with a hyphen, at most 63 characters (Cloud Run: "only lowercase, digits, and
hyphens; must begin with letter, and may not end with hyphen; must be less than 64
characters"), and it starts with the service's name and a dash. A traffic tag's URL
(``https://TAG---SERVICE-…run.app``) needs tag + service name within 46 characters (see
bot/config.py, where a service too long for Runback's tags is refused).
"""

from __future__ import annotations

import re

MAX_REVISION_NAME = 63
_LABEL = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")


def revision_name(service: str, suffix: str) -> str:
    """``{service}-{suffix}`` as a valid revision name: cut to 63 characters, never ending with
    a hyphen (the suffix gives way; the service's prefix is kept whole)."""
    name = f"{service}-{suffix.strip('-').lower()}"[:MAX_REVISION_NAME].rstrip("-")
    if not is_revision_name(name, service):
        raise ValueError(f"no valid revision name for service {service!r} and {suffix!r}")
    return name


def is_revision_name(name: str, service: str) -> bool:
    return bool(_LABEL.fullmatch(name)) and name.startswith(service + "-")
