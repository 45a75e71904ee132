"""The sample world of the sandbox: app.yaml's sandbox users, groups and channels in the Slack
emulator, three revisions of every service in the Cloud Run emulator, and an error-rate and a P95
alert policy per service in the Monitoring emulator, notifying Runback's webhook."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, cast
from urllib.parse import urlsplit

from google.cloud import monitoring_v3

from bot.config import Config, ServiceConfig
from bot.sandbox.emulator.cloudrun import DEFAULT_SERVICE_ACCOUNT
from bot.sandbox.emulator.monitoring_alerts import alert_resource_labels
from bot.sandbox.emulator.secretmanager import ACCESSOR
from bot.sandbox.emulator.server import Emulator
from bot.sandbox.emulator.slack_api import BOT_USER_ID

UNINVITED_CHANNEL = "C0RANDOM"
# Where the sandbox's alert policies send their incidents (docs/deploying.md, step 7).
ALERT_WEBHOOK = "https://runback-sandbox.a.run.app/alerts/monitoring?token=RUNBACK_ALERT_TOKEN"

SIDECAR_IMAGE = "us-docker.pkg.dev/cloud-ops-agents-artifacts/otel/otelcol:0.100.0"
SAMPLE_REVISIONS = (
    ("00001", "v1.0.0", 3 * 86400),
    ("00002", "v1.1.0", 86400),
    ("00003", "v1.2.0", 3600),
)
# Each sample revision's own settings (RevisionTemplate fields, in the API's JSON): a revision
# is a snapshot of its template, and a new revision built from an older one must carry that
# one's settings, never the newest's (the service's template after a rollback).
SAMPLE_SETTINGS: dict[str, dict[str, object]] = {
    "00001": {
        "timeout": "300s",
        "maxInstanceRequestConcurrency": 80,
        "scaling": {"maxInstanceCount": 10},
        "labels": {"release": "v1-0-0"},
    },
    "00002": {
        "timeout": "120s",
        "maxInstanceRequestConcurrency": 40,
        "scaling": {"minInstanceCount": 1, "maxInstanceCount": 20},
        "executionEnvironment": "EXECUTION_ENVIRONMENT_GEN2",
        "labels": {"release": "v1-1-0"},
    },
    "00003": {
        "timeout": "60s",
        "maxInstanceRequestConcurrency": 20,
        "scaling": {"minInstanceCount": 2, "maxInstanceCount": 50},
        "executionEnvironment": "EXECUTION_ENVIRONMENT_GEN2",
        "vpcAccess": {
            "egress": "PRIVATE_RANGES_ONLY",
            "networkInterfaces": [{"network": "default"}],
        },
        "labels": {"release": "v1-2-0"},
    },
}
# The feature flags each sample revision was deployed with (`/flag SERVICE` lists them).
SAMPLE_FLAGS = {
    "00001": {"FEATURE_FLAG_NEW_CHECKOUT": "false"},
    "00002": {"FEATURE_FLAG_NEW_CHECKOUT": "false", "FEATURE_FLAG_BETA_SEARCH": "false"},
    "00003": {"FEATURE_FLAG_NEW_CHECKOUT": "false", "FEATURE_FLAG_BETA_SEARCH": "true"},
}


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
        env = seed_database(emulator, service)
        revisions = [
            {
                "name": f"{service.name}-{number}",
                "image": f"us-docker.pkg.dev/{service.project}/apps/{service.name}:{version}",
                "age_s": age,
                "env": {"APP_ENV": service.environment, **SAMPLE_FLAGS[number], **env},
                "template": SAMPLE_SETTINGS[number],
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
            traffic={str(revisions[-1]["name"]): 100},
        )
        if service.url:
            emulator.cloudrun.map_domain(urlsplit(service.url).netloc, service.name)
        if service.requires_auth:
            emulator.cloudrun.require_auth(service.name)
    seed_runback(emulator, config)
    seed_alert_policies(emulator, config)


RUNBACK_SERVICE = "runback"
RUNBACK_REVISION = "runback-00001-kaz"


def seed_runback(emulator: Emulator, config: Config, cpu_idle: bool = False) -> str:
    """Runback's own Cloud Run service, deployed as docs/deploying.md says (CPU always allocated,
    one minimum instance), in the first service's project and the metadata server's region:
    what `serve` and `doctor` read about themselves. ``cpu_idle`` models request-based
    billing (the CPU throttled between requests)."""
    project = config.services[0].project
    emulator.metadata.project = project
    revision = {
        "name": RUNBACK_REVISION,
        "image": f"{emulator.metadata.region}-docker.pkg.dev/{project}/"
        "cloud-run-source-deploy/runback:latest",
        "age_s": 7 * 86400,
        "resources": {"limits": {"cpu": "1", "memory": "512Mi"}, "cpuIdle": cpu_idle},
        "template": {
            "serviceAccount": f"runback@{project}.iam.gserviceaccount.com",
            "scaling": {"minInstanceCount": 1},
        },
    }
    return emulator.cloudrun.seed_service(
        project, emulator.metadata.region, RUNBACK_SERVICE, revisions=[revision]
    )


def seed_alert_policies(emulator: Emulator, config: Config) -> None:
    """Per service, the runbook's two alerts (error rate, P95), each notifying a webhook channel
    at Runback's /alerts/monitoring, grouped by service_name as the intake needs."""
    alerts = emulator.monitoring.alerts
    channels: dict[str, str] = {}
    for service in config.services:
        if service.project not in channels:
            webhook = monitoring_v3.NotificationChannel(
                type_="webhook_tokenauth",
                display_name="Runback",
                labels={"url": ALERT_WEBHOOK},
                enabled=True,
            )
            channels[service.project] = alerts.add_channel(service.project, webhook).name
        for policy in service_policies(service, config, channels[service.project]):
            alerts.add_policy(service.project, policy)


def service_policies(
    service: ServiceConfig, config: Config, channel: str
) -> list[monitoring_v3.AlertPolicy]:
    scope = (
        f'resource.type = "cloud_run_revision" AND resource.labels.service_name = "{service.name}"'
    )
    count = f'metric.type = "run.googleapis.com/request_count" AND {scope}'
    latency = f'metric.type = "run.googleapis.com/request_latencies" AND {scope}'
    minute = {"seconds": 60}
    by_revision = ["resource.label.service_name", "resource.label.revision_name"]
    rate = monitoring_v3.Aggregation(
        alignment_period=minute,
        per_series_aligner=monitoring_v3.Aggregation.Aligner.ALIGN_RATE,
        cross_series_reducer=monitoring_v3.Aggregation.Reducer.REDUCE_SUM,
        group_by_fields=by_revision,
    )
    p95 = monitoring_v3.Aggregation(
        alignment_period=minute,
        per_series_aligner=monitoring_v3.Aggregation.Aligner.ALIGN_DELTA,
        cross_series_reducer=monitoring_v3.Aggregation.Reducer.REDUCE_PERCENTILE_95,
        group_by_fields=by_revision,
    )
    above = monitoring_v3.ComparisonType.COMPARISON_GT
    thresholds = config.thresholds
    error_rate = monitoring_v3.AlertPolicy.Condition.MetricThreshold(
        filter=f'{count} AND metric.labels.response_code_class = "5xx"',
        aggregations=[rate],
        denominator_filter=count,
        denominator_aggregations=[rate],
        comparison=above,
        threshold_value=thresholds.error_rate_observe,
        duration=minute,
    )
    slow = monitoring_v3.AlertPolicy.Condition.MetricThreshold(
        filter=latency,
        aggregations=[p95],
        comparison=above,
        threshold_value=thresholds.p95_rollback_ms,
        duration=minute,
    )
    conditions = (
        (f"{service.name} error rate > {thresholds.error_rate_observe:.0%}", error_rate),
        (f"{service.name} P95 > {thresholds.p95_rollback_ms:g} ms", slow),
    )
    return [
        monitoring_v3.AlertPolicy(
            display_name=name,
            combiner=monitoring_v3.AlertPolicy.ConditionCombinerType.OR,
            conditions=[{"display_name": name, "condition_threshold": threshold}],
            notification_channels=[channel],
            enabled=True,
        )
        for name, threshold in conditions
    ]


# A sample DATABASE_URL: its password is a credential Runback must never show or log.
SAMPLE_PASSWORD = "sandbox-Pa55word-never-shown"


def seed_database(emulator: Emulator, service: ServiceConfig) -> dict[str, object]:
    """The service's Cloud SQL instance (automated daily backups) and its DATABASE_URL secret;
    returns the revisions' environment, which reads the URL from the secret. Production pins
    version 1; staging reads "latest" (a restore then needs a secret of its own)."""
    database = service.database
    if database is None:
        return {}
    project = service.database_project
    instance = emulator.sqladmin.seed_instance(project, database.instance, region=service.region)
    url = f"postgresql://app:{SAMPLE_PASSWORD}@/app?host=/cloudsql/{instance['connection_name']}"
    secret = emulator.secrets.seed_secret(project, database.secret, url)
    # The revisions run as the default compute service account, which may read this secret
    # (and no other: a restore's new secret needs a grant of its own).
    emulator.secrets.grant(secret, ACCESSOR, f"serviceAccount:{DEFAULT_SERVICE_ACCOUNT}")
    version = "1" if service.environment == "production" else "latest"
    return {database.env: {"secret": database.secret, "version": version}}


ERROR_RATE_METRIC = "run.googleapis.com/request_count"
LATENCY_METRIC = "run.googleapis.com/request_latencies"
# The kinds of alert the console's `alert SERVICE [KIND]` sends (error rate by default).
ALERT_KINDS = ("error_rate", "latency", "uptime")


def alert_payload(
    emulator: Emulator, service: str, state: str, incident_id: str, kind: str = "error_rate"
) -> str:
    """A Cloud Monitoring webhook (version 1.2) for ``service``, shaped like the real thing: the
    serving revision, the policy's condition (what its value is measured over), and the value
    that policy measured: the newest minute Monitoring shows (its ~3 minutes delay), as an
    alert fires on. ``kind``: the error-rate or P95 policy, or an uptime check. Its resource
    labels are those the policy's aggregation keeps (``groupByFields``: the seed's policies
    group by service and revision, so no ``location`` nor ``project_id``), as Monitoring sends
    them; a service without such a policy gets every label."""
    serving = [row for row in _traffic_or_empty(emulator, service) if row["percent"]]
    revision = (
        max(serving, key=lambda row: cast(int, row["percent"]))["revision"] if serving else ""
    )
    try:
        project, region = emulator.cloudrun.location_of(service)
    except KeyError:
        project, region = emulator.metadata.project, emulator.metadata.region
    labels = {
        "project_id": project,
        "service_name": service,
        "revision_name": str(revision),
        "location": region,
        "configuration_name": service,
    }
    now = int(emulator.monitoring.clock())  # the sandbox's time, as the bot's
    measured = _newest_visible_minute(emulator, str(revision)) if revision else None
    metric = {"error_rate": ERROR_RATE_METRIC, "latency": LATENCY_METRIC}.get(kind)
    policy = emulator.monitoring.alerts.policy_for(project, service, metric) if metric else None
    condition = None
    if policy is not None:  # as the payload carries it: JSON, camelCase, enums by name
        labels = alert_resource_labels(policy, labels)
        condition = json.loads(
            monitoring_v3.AlertPolicy.Condition.to_json(
                policy.conditions[0], use_integers_for_enums=False
            )
        )
    if kind == "uptime":  # an uptime check of the service: no revision
        labels.pop("revision_name", None)
    incident = {
        "incident_id": incident_id,
        "scoping_project_id": project,
        "url": f"https://console.cloud.google.com/monitoring/alerting/incidents/{incident_id}",
        "started_at": now,
        "ended_at": now if state == "closed" else None,
        "state": state,
        "resource": {"type": "cloud_run_revision", "labels": labels},
        **_measurement(service, kind, measured, policy),
        "condition": condition,
        "documentation": {
            "content": "Runbook: seed/rollback-plan.md",
            "mime_type": "text/markdown",
        },
    }
    return json.dumps({"version": "1.2", "incident": incident})


def _measurement(
    service: str,
    kind: str,
    minute: dict[str, Any] | None,
    policy: monitoring_v3.AlertPolicy | None,
) -> dict[str, Any]:
    """The alert's metric, names, summary and measured value, per kind."""
    if kind == "latency":
        p95 = (minute or {}).get("p95_ms")
        value = "" if p95 is None else f"{p95:.0f}"
        return {
            "summary": f"P95 latency for {service} is above the threshold of 2000 ms.",
            "metric": {"type": "run.googleapis.com/request_latencies", "displayName": "Latency"},
            "policy_name": f"{service} P95 > 2000 ms",
            "condition_name": "P95 above 2 s for 1 min",
            "observed_value": value,
            "threshold_value": "2000",
        }
    if kind == "uptime":
        return {
            "summary": f"Uptime check for {service} is failing.",
            "metric": {
                "type": "monitoring.googleapis.com/uptime_check/check_passed",
                "displayName": "Check passed",
            },
            "policy_name": f"{service} uptime check",
            "condition_name": "Uptime check failing",
            "observed_value": "0",
            "threshold_value": "1",
        }
    requests = (minute or {}).get("requests") or 0
    rate = (minute or {}).get("errors", 0) / requests if requests else None
    return {
        "summary": f"Error rate for {service} is above the threshold of 0.01.",
        "metric": {
            "type": ERROR_RATE_METRIC,
            "displayName": "Request Count",
            "labels": {"response_code_class": "5xx"},
        },
        "policy_name": policy.display_name if policy else f"{service} error rate > 1%",
        "condition_name": (
            policy.conditions[0].display_name if policy else "5xx ratio above 1% for 1 min"
        ),
        "observed_value": "" if rate is None else f"{rate:.4f}",
        "threshold_value": "0.01",
    }


def _newest_visible_minute(emulator: Emulator, revision: str) -> dict[str, Any] | None:
    """The newest minute of ``revision`` Monitoring shows (what a policy's condition sees)."""
    monitoring = emulator.monitoring
    try:
        minutes = monitoring.series(revision, minutes=15)["minutes"]
    except KeyError:
        return None
    visible = monitoring.clock() - monitoring.delay_s
    shown = [m for m in minutes if datetime.fromisoformat(m["end"]).timestamp() <= visible]
    return next((m for m in shown if m["requests"]), None)


def _traffic_or_empty(emulator: Emulator, service: str) -> list[dict[str, object]]:
    try:
        return emulator.cloudrun.traffic(service)
    except KeyError:
        return []
