"""Does an environment variable look like it carries a credential? Pure.

bot/policy/redact.py hides network addresses, not secrets, so these patterns are their own:
names that say what they hold, and values in the shapes well-known credentials take.
"""

from __future__ import annotations

import re

# Name parts (split on "_" / "-") that say the value is a credential.
_SECRET_WORDS = frozenset(
    {
        "PASSWORD",
        "PASSWD",
        "PWD",
        "PASS",
        "SECRET",
        "SECRETS",
        "TOKEN",
        "TOKENS",
        "APIKEY",
        "CREDENTIAL",
        "CREDENTIALS",
        "PRIVATE",
        "DSN",
    }
)
_SECRET_PAIRS = (("API", "KEY"), ("ACCESS", "KEY"), ("SECRET", "KEY"), ("SIGNING", "KEY"))

_SECRET_VALUES = (
    re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.I),  # a URL with user:password@
    re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{8,}"),  # Slack tokens
    re.compile(r"\bxapp-[A-Za-z0-9-]{8,}"),  # Slack app-level tokens
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),  # AWS access key ids
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"),  # GitHub tokens
    re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),  # Google API keys
    re.compile(r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{10,}"),  # Stripe keys
    re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\."),  # JWTs
    re.compile(r'"private_key"\s*:'),  # a service account key file
)


def name_looks_secret(name: str) -> bool:
    parts = [part for part in re.split(r"[_\-.]", name.upper()) if part]
    if any(part in _SECRET_WORDS for part in parts):
        return True
    if len(parts) > 1 and parts[-1] == "KEY":
        return True
    return any(pair == tuple(parts[i : i + 2]) for pair in _SECRET_PAIRS for i in range(len(parts)))


def value_looks_secret(value: str) -> bool:
    return any(pattern.search(value) for pattern in _SECRET_VALUES)


def looks_like_credential(name: str, value: str) -> bool:
    """A plain (not Secret Manager) variable whose name or value looks like a credential. An
    empty value holds nothing."""
    return bool(value) and (name_looks_secret(name) or value_looks_secret(value))
