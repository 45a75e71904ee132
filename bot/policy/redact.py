"""Error details as users see them: without the URLs, hosts and ports of the bot's own network
(the logs and the audit trail keep the full text)."""

from __future__ import annotations

import re

HIDDEN = "…"

_PATTERNS = (
    re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>()]+"),  # any URL
    re.compile(r"\b(?:host|port)=(?:'[^']*'|\"[^\"]*\"|[^\s,)]+)"),  # urllib3's host='…', port=…
    re.compile(r"\bwith url: \S+"),  # urllib3's request path
    re.compile(r"\[?\b(?:\d{1,3}\.){3}\d{1,3}\b\]?(?::\d{1,5})?"),  # IPv4, with a port
    re.compile(r"\[[0-9a-fA-F:]*:[0-9a-fA-F:]*\](?::\d{1,5})?"),  # [IPv6]
    re.compile(r"\b(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,63}:\d{1,5}\b"),  # name.domain:port
    re.compile(r"\b(?:[A-Za-z0-9-]+\.)*(?:googleapis\.com|run\.app|internal|localhost)\b"),
)


def without_addresses(text: object) -> str:
    """``text`` with every URL, host name with a port, IP address and Google API host hidden."""
    result = str(text)
    for pattern in _PATTERNS:
        result = pattern.sub(HIDDEN, result)
    return result
