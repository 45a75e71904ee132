"""``/deploy SERVICE IMAGE --migration``: a form takes the release's SQL (and the feature flag a
destructive migration hides behind), then the release starts with it.

Without ``--migration`` nothing changes for the on-call engineer: ``/deploy`` starts at once,
with the migration CI registered for that image if there is one. The form is opened at once
with the command's trigger_id (Slack lets it live 3 s); what the command said (and who said it)
travels in the view's private_metadata, sealed (bot/slack/metadata.py): a form whose metadata is
not exactly what Runback opened it with starts nothing, and says so beside the SQL. A
destructive or unknown migration without a valid flag name keeps the form open with the error
beside the field (``response_action: errors``,
https://api.slack.com/surfaces/modals#displaying_errors), so nothing is lost and nothing starts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, App

from bot.ops.context import Deps
from bot.ops.engine import Engine
from bot.policy.migrations import MAX_SQL_CHARS
from bot.ports import Message
from bot.slack.answers import tell_later
from bot.slack.metadata import ViewSeal

CALLBACK_ID = "deploy_migration"
DIALECTS = ("postgres", "mysql")


@dataclass(frozen=True)
class DeployOptions:
    service: str
    image: str
    migration: bool = False  # --migration: open the form
    flag: str = ""  # --flag FEATURE_FLAG_NAME


def parse_deploy(text: str) -> DeployOptions | None:
    """``SERVICE IMAGE [--migration] [--flag NAME]`` (``--flag=NAME`` too); None when it is not."""
    words = text.split()
    if len(words) < 2 or words[0].startswith("--") or words[1].startswith("--"):
        return None
    migration, flag, rest = False, "", words[2:]
    while rest:
        word = rest.pop(0)
        if word == "--migration" and not migration:
            migration = True
        elif word == "--flag" and rest and not flag:
            flag = rest.pop(0)
        elif word.startswith("--flag=") and not flag:
            flag = word.removeprefix("--flag=")
        else:
            return None
    return DeployOptions(words[0], words[1], migration, flag)


def form_view(
    deps: Deps, command: dict[str, Any], options: DeployOptions, seal: ViewSeal
) -> dict[str, Any]:
    metadata = seal.seal(
        {
            "channel": command["channel_id"],
            "user": command["user_id"],
            "service": options.service,
            "image": options.image,
        }
    )
    return deps.renderer.view(
        "deploy_migration_modal",
        metadata=metadata,
        service=options.service,
        image=options.image,
        flag=options.flag,
    )


@dataclass(frozen=True)
class Submitted:
    sql: str
    dialect: str
    flag: str
    channel: str
    service: str
    image: str


def _submitted(view: dict[str, Any], user: str, seal: ViewSeal) -> Submitted | None:
    """What was typed, and what Runback opened the form with; None when the metadata is not
    Runback's own, sealed for this user."""
    values = (view.get("state") or {}).get("values") or {}

    def typed(block: str) -> str:
        return str(((values.get(block) or {}).get(block) or {}).get("value") or "")

    option = ((values.get("dialect") or {}).get("dialect") or {}).get("selected_option") or {}
    dialect = str(option["value"]) if option.get("value") in DIALECTS else "postgres"
    meta = seal.open(str(view.get("private_metadata") or ""))
    if meta is None or meta.get("user") != user:
        return None
    if not all(
        isinstance(meta.get(k), str) and meta.get(k) for k in ("channel", "service", "image")
    ):
        return None
    flag = typed("flag").strip()
    return Submitted(typed("sql"), dialect, flag, meta["channel"], meta["service"], meta["image"])


def form_errors(deps: Deps, form: Submitted) -> dict[str, str]:
    """What keeps the form open: no statement, or a destructive/unknown migration without a
    valid flag name. Judged now (pglast and sqlglot take milliseconds), inside the 3 s ack."""
    from bot.ops.release_migrations import assess, migration_of
    from bot.policy.release_migrations import flag_problem, is_guarded, strictest

    if len(form.sql) > MAX_SQL_CHARS:  # Slack's own field holds 3,000: only a forged form
        return {"sql": deps.renderer.text("migration.too_long", limit=f"{MAX_SQL_CHARS:,}")}
    summary = assess(form.sql, form.dialect)  # type: ignore[arg-type]
    if not summary.statements:
        return {"sql": deps.renderer.text("deploy_migration.sql_empty")}
    registered = migration_of(deps, form.service, form.image)  # what CI found stands
    verdict = strictest((summary.verdict, registered["verdict"] if registered else "none"))
    problem = flag_problem(form.flag) if is_guarded(verdict) or form.flag else None
    if problem is None:
        return {}
    return {"flag": deps.renderer.text(f"deploy_migration.flag_{problem}", verdict=verdict)}


def register(
    app: App, deps: Deps, engine: Engine, start: Callable[..., Message | None], seal: ViewSeal
) -> None:
    """``start(request)`` starts a release and returns what to tell the requester (as /deploy)."""

    @app.view(CALLBACK_ID)
    @engine.tracked
    def submitted(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        from bot.ops.release import ReleaseRequest

        user = body["user"]["id"]
        form = _submitted(view, user, seal)
        if form is None:  # a release nobody asked for here, or that nobody could see
            deps.audit(user, "release.refused", "refused", why="form_tampered")
            ack(
                response_action="errors",
                errors={"sql": deps.renderer.text("deploy_migration.form_not_ours")},
            )
            return
        errors = form_errors(deps, form)
        if errors:
            ack(response_action="errors", errors=errors)
            return
        ack()  # closes the form; the release's card follows
        request = ReleaseRequest(
            service=form.service,
            image=form.image,
            user=user,
            channel=form.channel,
            flag=form.flag,
            migration_sql=form.sql,
            dialect=form.dialect,
        )

        tell_later(engine, deps, form.channel, user, lambda: start(request))
