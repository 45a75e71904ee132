"""The sample world of the sandbox: app.yaml's sandbox users, groups and channels in the Slack
emulator, and three revisions of every service in the Cloud Run emulator."""

from __future__ import annotations

from bot.config import Config
from bot.sandbox.emulator.server import Emulator

SAMPLE_REVISIONS = (
    ("00001", "v1.0.0", 3 * 86400),
    ("00002", "v1.1.0", 86400),
    ("00003", "v1.2.0", 3600),
)


def seed(emulator: Emulator, config: Config) -> None:
    slack = emulator.slack
    for name, user in config.sandbox.users.items():
        slack.add_user(user.id, name, real_name=user.real_name or name)
    for name, channel_id in config.sandbox.channels.items():
        slack.add_channel(channel_id, name)
    incidents = config.channels.incidents
    slack.add_channel(incidents.id, incidents.name)
    for handle, group in config.sandbox.usergroups.items():
        slack.add_usergroup(group.id, handle, list(group.users))
    for service in config.services:
        revisions = [
            {
                "name": f"{service.name}-{number}",
                "image": f"us-docker.pkg.dev/{service.project}/apps/{service.name}:{version}",
                "age_s": age,
            }
            for number, version, age in SAMPLE_REVISIONS
        ]
        emulator.cloudrun.seed_service(
            service.project,
            service.region,
            service.name,
            revisions=revisions,
            traffic={revisions[-1]["name"]: 100},
        )
