"""The sample world of the sandbox: app.yaml's sandbox users, groups and channels in the Slack
emulator, and three revisions of every service in the Cloud Run emulator."""

from __future__ import annotations

import json
import time
from urllib.parse import urlsplit

from bot.config import Config
from bot.sandbox.emulator.server import Emulator
from bot.sandbox.emulator.slack_api import BOT_USER_ID

UNINVITED_CHANNEL = "C0RANDOM"

SIDECAR_IMAGE = "us-docker.pkg.dev/cloud-ops-agents-artifacts/otel/otelcol:0.100.0"
SAMPLE_REVISIONS = (
    ("00001", "v1.0.0", 3 * 86400),
    ("00002", "v1.1.0", 86400),
    ("00003", "v1.2.0", 3600),
)


def seed(emulator: Emulator, config: Config) -> None:
    slack = emulator.slack
    for name, user in config.sandbox.users.items():
        slack.add_user(user.id, name, real_name=user.real_name or name)
    # Runback posts only where it was invited (/invite @Runback), as in a real workspace
    for name, channel_id in config.sandbox.channels.items():
        slack.add_channel(channel_id, name, members=[BOT_USER_ID])
    incidents = config.channels.incidents
    slack.add_channel(incidents.id, incidents.name, members=[BOT_USER_ID])
    slack.add_channel(UNINVITED_CHANNEL, "random")  # try a command where Runback is not
    for handle, group in config.sandbox.usergroups.items():
        slack.add_usergroup(group.id, handle, list(group.users))
    for service in config.services:
        revisions = [
            {
                "name": f"{service.name}-{number}",
                "image": f"us-docker.pkg.dev/{service.project}/apps/{service.name}:{version}",
                "age_s": age,
                # a flag read by GET /config/flags, and the database URL from Secret Manager
                "env": {
                    "FEATURE_FLAG_NEW_CHECKOUT": "false",
                    "DATABASE_URL": {"secret": f"{service.name}-database-url", "version": "latest"},
                },
            }
            for number, version, age in SAMPLE_REVISIONS
        ]
        if service.environment == "production":  # a sidecar before the ingress container
            for revision in revisions:
                revision["sidecars"] = [{"name": "otel-collector", "image": SIDECAR_IMAGE}]
        emulator.cloudrun.seed_service(
            service.project,
            service.region,
            service.name,
            revisions=revisions,
            traffic={revisions[-1]["name"]: 100},
        )
        if service.url:
            emulator.cloudrun.map_domain(urlsplit(service.url).netloc, service.name)
        if service.requires_auth:
            emulator.cloudrun.require_auth(service.name)


def alert_payload(emulator: Emulator, service: str, state: str, incident_id: str) -> str:
    """A Cloud Monitoring webhook (version 1.2) for an error-rate policy on ``service``, shaped
    like the real thing, with the serving revision and its current error rate."""
    serving = [row for row in _traffic_or_empty(emulator, service) if row["percent"]]
    revision = max(serving, key=lambda row: row["percent"])["revision"] if serving else ""
    behaviour = emulator.cloudrun.behaviour(revision) if revision else {}
    now = int(time.time())
    incident = {
        "incident_id": incident_id,
        "scoping_project_id": "runback-sandbox",
        "url": f"https://console.cloud.google.com/monitoring/alerting/incidents/{incident_id}",
        "started_at": now - 60,
        "ended_at": now if state == "closed" else None,
        "state": state,
        "summary": f"Error rate for {service} is above the threshold of 0.01.",
        "resource": {
            "type": "cloud_run_revision",
            "labels": {
                "service_name": service,
                "revision_name": revision,
                "location": "us-central1",
                "project_id": "runback-sandbox",
            },
        },
        "metric": {
            "type": "run.googleapis.com/request_count",
            "displayName": "Request Count",
            "labels": {"response_code_class": "5xx"},
        },
        "policy_name": f"{service} error rate > 1%",
        "condition_name": "5xx ratio above 1% for 1 min",
        "observed_value": str(behaviour.get("error_rate", "")),
        "threshold_value": "0.01",
        "documentation": {
            "content": "Runbook: seed/rollback-plan.md",
            "mime_type": "text/markdown",
        },
    }
    return json.dumps({"version": "1.2", "incident": incident})


def _traffic_or_empty(emulator: Emulator, service: str) -> list[dict[str, object]]:
    try:
        return emulator.cloudrun.traffic(service)
    except KeyError:
        return []
