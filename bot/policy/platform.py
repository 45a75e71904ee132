"""Facts of the real platform that a configuration must respect. Pure."""

from __future__ import annotations


def health_path_reserved(path: str) -> bool:
    """Cloud Run reserves "some paths ending in z" on *.run.app URLs (exactly ``/healthz`` in
    practice; https://cloud.google.com/run/docs/known-issues, "Reserved URL paths"). Google
    advises avoiding every path ending in z, and so does Runback."""
    return path.split("?", 1)[0].endswith("z")
