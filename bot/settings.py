"""The environment `serve` reads. Light on purpose: `serve` reads it before it listens."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    slack_bot_token: str
    slack_signing_secret: str
    slack_api_url: str | None
    slack_app_token: str | None
    database_url: str
    emulator_host: str | None
    emulator_grpc_host: str | None
    alert_token: str | None
    tick_token: str | None
    port: int
    google_project: str | None
    lease_s: float
    retry_deadline_s: float
    db_upgrade: bool = False  # upgrade an older schema at start (under a database lock)
    ci_token: str | None = None  # POST /ci/releases (Authorization: Bearer); unset: 401
    # Set by Cloud Run in every instance: Runback reads its own service at start.
    k_service: str | None = None
    k_revision: str | None = None
    metadata_host: str = "metadata.google.internal"  # GCE_METADATA_HOST, as google-auth reads it
    # POST /tasks/tick does due work inside its request for at most this long: under the
    # minute between Cloud Scheduler's calls and its 3-minute default attempt deadline.
    tick_deadline_s: float = 50.0
    # Build Google's clients and compile the templates two seconds after start (seconds of CPU,
    # in quiet moments), so that the first rollback after a cold start does not pay for them.
    # Off for processes too short-lived to use them: the test suite's hundreds of bots.
    warm_up: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            slack_bot_token=env.get("SLACK_BOT_TOKEN", ""),
            slack_signing_secret=env.get("SLACK_SIGNING_SECRET", ""),
            slack_api_url=env.get("SLACK_API_URL") or None,
            slack_app_token=env.get("SLACK_APP_TOKEN") or None,
            database_url=env.get("DATABASE_URL") or "sqlite:///runback.db",
            emulator_host=env.get("RUNBACK_EMULATOR_HOST") or None,
            emulator_grpc_host=env.get("RUNBACK_EMULATOR_GRPC_HOST") or None,
            alert_token=env.get("RUNBACK_ALERT_TOKEN") or None,
            tick_token=env.get("RUNBACK_TICK_TOKEN") or None,
            port=int(env.get("PORT") or 3000),
            google_project=env.get("GOOGLE_CLOUD_PROJECT") or None,
            lease_s=float(env.get("RUNBACK_LEASE_S") or 15),
            retry_deadline_s=float(env.get("RUNBACK_RETRY_DEADLINE_S") or 20),
            db_upgrade=env.get("RUNBACK_DB_UPGRADE", "").lower() in ("1", "true", "yes"),
            ci_token=env.get("RUNBACK_CI_TOKEN") or None,
            k_service=env.get("K_SERVICE") or None,
            k_revision=env.get("K_REVISION") or None,
            metadata_host=env.get("GCE_METADATA_HOST") or "metadata.google.internal",
            tick_deadline_s=float(env.get("RUNBACK_TICK_DEADLINE_S") or 50),
            warm_up=env.get("RUNBACK_WARM_UP", "").lower() not in ("0", "off", "false", "no"),
        )

    def missing(self) -> list[str]:
        """The environment variables ``serve`` cannot run without."""
        required = {
            "SLACK_BOT_TOKEN": self.slack_bot_token,
            "SLACK_SIGNING_SECRET": self.slack_signing_secret,
        }
        return [name for name, value in required.items() if not value]
