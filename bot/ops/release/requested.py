"""A release as somebody asked for it (``/deploy``, CI, a form, an override click)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReleaseRequest:
    service: str
    image: str
    user: str
    channel: str
    confirmed: bool = False  # the requester saw the image's warnings and clicked to go on
    flag: str = ""  # the feature flag a destructive migration hides behind (FEATURE_FLAG_...)
    from_ci: bool = False  # POST /ci/releases: staging's "automatic when CI passes"
    migration_sql: str | None = None  # attached with the /deploy --migration form
    dialect: str = "postgres"
    override_by: str = ""  # a tech lead who released past a ❌ of the readiness checklist
