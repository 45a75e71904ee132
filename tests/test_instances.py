"""Two `python -m bot serve` instances on one PostgreSQL and the same emulators: the database
settles every race between them (service locks, conditional updates, leases).

Each test gets a schema of its own on the server in ``DATABASE_URL_POSTGRES`` (see tests/db.py)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from sqlalchemy import select

from bot.config import load_config
from bot.sandbox.emulator.http import Fault
from bot.sandbox.emulator.server import Emulator
from bot.sandbox.seed import alert_payload, seed
from bot.sandbox.slack_payloads import button_click, find_button, signed_headers, slash_command
from bot.store import AuditRecord, IncidentRecord, Operation, Store
from tests.db import postgres_schema
from tests.helpers import (
    SECRET,
    TOKEN,
    BotProcess,
    bot_config,
    free_port,
    serve_env,
    wait_until,
)

pytestmark = pytest.mark.postgres

ALERT_TOKEN = "alert-token-for-tests"
TICK_TOKEN = "tick-token-for-tests"
LEASE_S = 3  # short, so a killed instance's work moves on soon; renewed every second
SERVICE = "wa-backend"
CHANNEL = "C0INCIDENTS"
IMAGE = "us-docker.pkg.dev/runback-sandbox/apps/wa:2.0"


class Instance(BotProcess):
    """A bot process given longer to start: two of them start at once on a loaded machine."""

    def __init__(self, env: dict[str, str], port: int, log_dir: Path) -> None:
        super().__init__(env, port, log_dir, start_timeout_s=60)


@dataclass
class Pair:
    emulator: Emulator
    a: BotProcess
    b: BotProcess
    config_path: Path
    store: Store  # the shared database, read by the test

    @property
    def bots(self) -> tuple[BotProcess, BotProcess]:
        return self.a, self.b

    def start(self) -> None:
        # Both at once: two instances starting together must not trip over each other either.
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda bot: bot.start(), self.bots))

    def configure(self, change: Callable[[dict[str, Any]], None]) -> None:
        data = yaml.safe_load(self.config_path.read_text())
        change(data)
        self.config_path.write_text(yaml.safe_dump(data))

    def patches(self) -> list[Any]:
        return self.emulator.router.calls.list("run.services.patch")

    def operations(self) -> list[Operation]:
        with self.store.session() as session:
            return list(session.scalars(select(Operation).order_by(Operation.created_at)))

    def only_operation(self) -> Operation:
        operations = self.operations()
        assert len(operations) == 1, [(o.id, o.kind, o.state) for o in operations]
        return operations[0]

    def cards(self) -> list[dict[str, Any]]:
        return [m for m in self.emulator.slack.messages(CHANNEL) if not m.get("ephemeral_to")]

    def logs(self) -> str:
        return "\n".join(f"--- {bot.log.name} :{bot.port}\n{bot.log_tail()}" for bot in self.bots)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    # A delivery the killed instance had claimed is the survivor's after 5 s, not 20: still
    # far longer than a delivery to the emulator takes, so the two never send one twice.
    config_path = bot_config(tmp_path, slack={"claim_s": 5})
    with postgres_schema("runback_instances") as database_url:
        store = Store(database_url)  # the tables exist before either instance starts
        emulator = Emulator(slack_token=TOKEN).start()
        seed(emulator, load_config(config_path))
        bots = []
        for name in ("a", "b"):
            port = free_port()
            env = serve_env(
                emulator,
                port,
                database_url,
                config_path,
                RUNBACK_LEASE_S=str(LEASE_S),
                RUNBACK_ALERT_TOKEN=ALERT_TOKEN,
                RUNBACK_TICK_TOKEN=TICK_TOKEN,
            )
            log_dir = tmp_path / name
            log_dir.mkdir()
            bots.append(Instance(env, port, log_dir))
        world = Pair(emulator, bots[0], bots[1], config_path, store)
        try:
            yield world
        finally:
            for bot in bots:
                bot.stop()
            emulator.stop()
            store.close()


def wait_logged(pair: Pair, predicate: Callable[[], Any], timeout_s: float, what: str) -> None:
    """wait_until, with both instances' logs when it times out."""
    try:
        wait_until(predicate, timeout_s=timeout_s, what=what)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{pair.logs()}") from None


# -- sending what Slack and Cloud Monitoring send -----------------------------------------------


def post_signed(port: int, body: str) -> requests.Response:
    return requests.post(
        f"http://127.0.0.1:{port}/slack/events",
        data=body.encode(),
        headers=signed_headers(SECRET, body),
        timeout=10,
    )


def command(pair: Pair, port: int, name: str, text_: str, user: str) -> str:
    """Send a slash command; return its response_url (where the bot's answer goes)."""
    url = pair.emulator.slack.new_response_url(CHANNEL, user)
    body = slash_command(name, text_, user, user.lower(), CHANNEL, "incidents", url)
    response = post_signed(port, body)
    assert response.status_code == 200, response.text
    return url


def answers(pair: Pair, response_url: str) -> list[str]:
    """What the bot said through one response_url."""
    key = response_url.rsplit("/", 1)[1]
    calls = pair.emulator.router.calls.list("slack.response_url")
    return [str((c.body or {}).get("text", "")) for c in calls if c.path.endswith(key)]


def concurrently(jobs: list[Callable[[], Any]]) -> list[Any]:
    """Run every job at the same moment (a barrier), each on its own thread."""
    start = threading.Barrier(len(jobs))

    def run(job: Callable[[], Any]) -> Any:
        start.wait()
        return job()

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(run, jobs))


# -- the tests ----------------------------------------------------------------------------------


def test_twenty_concurrent_rollbacks_on_two_instances_patch_once(pair: Pair) -> None:
    pair.emulator.cloudrun.operation_delay_s = 3.0  # the winner holds the service a while
    pair.start()
    ports = [pair.bots[i % 2].port for i in range(20)]
    urls = concurrently(
        [lambda port=port: command(pair, port, "/rollback", SERVICE, "U0ANA") for port in ports]
    )

    wait_logged(
        pair,
        lambda: any(card["text"].endswith(": done") for card in pair.cards()),
        timeout_s=40,
        what="the rollback card to say done",
    )

    def told_busy() -> list[str]:
        """Told the service is busy (or, had the rollback ended first, that it was just
        rolled back, with the question whether to do it again)."""
        clear = ("is busy", "was already rolled back")
        return [url for url in urls if any(c in said for said in answers(pair, url) for c in clear)]

    wait_until(lambda: len(told_busy()) >= 19, what="every other requester to be told so")
    assert len(pair.patches()) == 1, "exactly one traffic PATCH"
    rollback_cards = [c for c in pair.cards() if c["text"].startswith(f"Rollback of {SERVICE}")]
    assert len(rollback_cards) == 1, [c["text"] for c in pair.cards()]
    states = sorted(o.state for o in pair.operations())  # a loser's row ends cancelled, unseen
    assert states.count("succeeded") == 1 and set(states) <= {"succeeded", "cancelled"}, states
    assert len(told_busy()) == 19, [answers(pair, url) for url in urls]


def test_ten_concurrent_approve_clicks_on_two_instances_decide_once(pair: Pair) -> None:
    pair.start()
    command(pair, pair.a.port, "/rollback", f"{SERVICE} planned", "U0LUIS")
    wait_until(lambda: find_button(pair.cards(), "Approve"), what="the card with Approve")
    request = pair.only_operation()
    assert request.state == "awaiting_approval"
    message, button, block_id = find_button(pair.cards(), "Approve")  # type: ignore[misc]

    def approve(port: int) -> str:
        url = pair.emulator.slack.new_response_url(CHANNEL, "U0SOFIA", message["ts"])
        body = button_click(message, button, block_id, "U0SOFIA", "u0sofia", "incidents", url)
        assert post_signed(port, body).status_code == 200
        return url

    concurrently([lambda i=i: approve(pair.bots[i % 2].port) for i in range(10)])
    wait_logged(
        pair,
        lambda: pair.store.operations.operation(request.id).state == "succeeded",  # type: ignore[union-attr]
        timeout_s=40,
        what="the approved rollback to finish",
    )
    polite = "Nothing more to do."  # "already approved by ..." or "someone else is deciding"

    def told_politely() -> int:
        notes = pair.emulator.slack.messages(CHANNEL)
        return sum(1 for m in notes if m.get("ephemeral_to") == "U0SOFIA" and polite in m["text"])

    wait_until(lambda: told_politely() >= 9, what="the other nine clicks to be told so")

    approval = pair.store.approvals.approval_for(request.id)
    assert approval is not None and approval.status == "approved" and approval.decided_by
    assert len(pair.patches()) == 1, "exactly one traffic PATCH"
    assert told_politely() == 9
    decisions = [r for r in audit(pair) if r.action == "rollback.approved"]
    assert len(decisions) == 1, decisions


def audit(pair: Pair) -> list[AuditRecord]:
    return pair.store.journal.audit(limit=10_000)


def incidents(pair: Pair) -> list[IncidentRecord]:
    with pair.store.session() as session:
        return list(session.scalars(select(IncidentRecord)))


def test_an_alert_delivered_to_both_instances_makes_one_incident(pair: Pair) -> None:
    pair.start()
    newest = pair.emulator.cloudrun.traffic(SERVICE)[0]["revision"]
    pair.emulator.cloudrun.set_behaviour(newest, healthz_status=503)  # roll back, whatever else
    body = alert_payload(pair.emulator, SERVICE, "open", "0.incident-twice")

    def deliver(port: int) -> requests.Response:
        return requests.post(
            f"http://127.0.0.1:{port}/alerts/monitoring",
            params={"token": ALERT_TOKEN},
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=10,
        )

    responses = concurrently([lambda bot=bot: deliver(bot.port) for bot in pair.bots])
    assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
    wait_logged(
        pair,
        lambda: any(card["text"].endswith(": done") for card in pair.cards()),
        timeout_s=40,
        what="the incident's rollback to finish",
    )
    assert len(incidents(pair)) == 1
    assert len([o for o in pair.operations() if o.kind == "rollback"]) == 1
    assert len(pair.patches()) == 1


def tick(port: int) -> int:
    response = requests.post(
        f"http://127.0.0.1:{port}/tasks/tick",
        headers={"Authorization": f"Bearer {TICK_TOKEN}"},
        timeout=10,
    )
    return response.status_code


def test_both_schedulers_ticking_judge_each_due_time_once(pair: Pair) -> None:
    interval_s = 1.0

    def quick_release(data: dict[str, Any]) -> None:
        data["release"].update(warmup_s=interval_s, judge_interval_s=interval_s)

    pair.configure(quick_release)
    # A check judges only what is new: a minute Monitoring did not show before (one a minute,
    # in real time here), or Monitoring not answering, which is a judgement of no data at every
    # due time (INVALID_ARGUMENT: not retried, so each check is quick).
    pair.emulator.router.faults.add(Fault("monitoring.timeSeries.list", 400, times=None))
    pair.start()
    command(pair, pair.a.port, "/deploy", f"{SERVICE} {IMAGE}", "U0MARTA")
    judged = 6
    stop = threading.Event()
    statuses: list[int] = []

    def hammer(port: int) -> None:  # besides both instances' own tickers, every second
        while not stop.is_set():
            statuses.append(tick(port))

    def judgements() -> list[AuditRecord]:
        return [r for r in audit(pair) if r.action == "release.judged"]

    with ThreadPoolExecutor(4) as pool:
        for bot in (pair.a, pair.b, pair.a, pair.b):
            pool.submit(hammer, bot.port)
        try:
            wait_logged(
                pair,
                lambda: len(judgements()) >= judged,
                timeout_s=45,
                what=f"{judged} judgements of green",
            )
        finally:
            stop.set()
    assert statuses and set(statuses) == {200}, set(statuses)
    assert len(statuses) > 4 * judged, "the ticks came much faster than the due times"
    times = sorted(r.at for r in judgements())
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= 0.9 * interval_s, f"a due time judged twice: {gaps}"
    release = pair.only_operation()
    recorded = release.data["judgements"]
    assert len(recorded) >= len(times) - 1, "no judgement overwritten by another instance's"
    deploys = [p for p in pair.patches() if "template" in (p.body or {})]
    assert len(deploys) == 1, "green deployed once"


def holder_once_sent(pair: Pair, state: str) -> BotProcess:
    """Wait until the newest operation is in ``state`` with its Cloud Run operation's name
    committed; the instance holding its lease (the one that asked, or the other one, whose
    ticker may have picked it up first)."""
    found: list[BotProcess] = []

    def sent() -> bool:
        operations = pair.operations()
        if not operations or operations[-1].state != state:
            return False
        newest = operations[-1]
        cloud_operation = newest.cloud_operation or (newest.data.get("pending") or {}).get("op")
        found[:] = [bot for bot in pair.bots if pid_mark(bot) in newest.lease_owner]
        return bool(cloud_operation and found)

    wait_logged(pair, sent, timeout_s=40, what=f"an instance to be {state}")
    return found[0]


def pid_mark(bot: BotProcess) -> str:
    assert bot.process is not None
    return f":{bot.process.pid}:"


def other(pair: Pair, bot: BotProcess) -> BotProcess:
    return pair.b if bot is pair.a else pair.a


def taken_over_by(pair: Pair, operation_id: str, bot: BotProcess) -> list[dict[str, Any]]:
    events = [e for e in pair.store.journal.timeline(operation_id) if e.kind == "taken_over"]
    return [e.data for e in events if pid_mark(bot) in e.data["instance"]]


def test_instance_killed_mid_rollback_the_other_finishes_it(pair: Pair) -> None:
    pair.emulator.cloudrun.operation_delay_s = 4.0  # the traffic update takes a while to apply
    pair.start()
    command(pair, pair.a.port, "/rollback", SERVICE, "U0ANA")
    killed = holder_once_sent(pair, "shifting")
    wait_until(lambda: any("shifting" in c["text"] for c in pair.cards()), what="card: shifting")
    killed.kill()
    survivor = other(pair, killed)

    operation_id = pair.only_operation().id
    wait_logged(
        pair,
        lambda: any(card["text"].endswith(": done") for card in pair.cards()),
        timeout_s=40,
        what="the survivor to finish the rollback",
    )
    operation = pair.store.operations.operation(operation_id)
    assert operation is not None and operation.state == "succeeded"
    assert len(pair.patches()) == 1, "the killed instance's PATCH is waited for, not sent again"
    assert taken_over_by(pair, operation_id, survivor), [
        (e.kind, e.data) for e in pair.store.journal.timeline(operation_id)
    ]
    assert pair.store.operations.lock_holder(SERVICE) is None
    assert pair.emulator.cloudrun.traffic(SERVICE)[0]["percent"] == 100


def test_instance_killed_mid_release_the_other_carries_on(pair: Pair) -> None:
    pair.emulator.cloudrun.operation_delay_s = 4.0
    pair.start()
    command(pair, pair.a.port, "/deploy", f"{SERVICE} {IMAGE}", "U0MARTA")
    killed = holder_once_sent(pair, "applying")
    killed.kill()
    survivor = other(pair, killed)
    release = pair.only_operation()

    def green_at_ten() -> bool:
        shares = {r["revision"]: r["percent"] for r in pair.emulator.cloudrun.traffic(SERVICE)}
        return sorted(shares.values()) == [10, 90]

    wait_logged(pair, green_at_ten, timeout_s=40, what="the survivor to shift 10%")
    deploys = [p for p in pair.patches() if "template" in (p.body or {})]
    assert len(deploys) == 1, "green was deployed once"
    assert len(pair.patches()) == 2, "one deploy and one shift to 10%, nothing twice"
    assert taken_over_by(pair, release.id, survivor)
    # the card says where the release is now (a delivery the killed instance may have claimed
    # is given back after slack.claim_s)
    wait_until(
        lambda: any(c["text"].endswith(": judging green") for c in pair.cards()),
        timeout_s=40,
        what=f"the release card to say judging: {[c['text'] for c in pair.cards()]}",
    )
