"""The one status message of an operation or incident, posted once and then updated in place,
and the outbox that tells Slack: durable, retried with backoff, never on the critical path."""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.ops.context import Deps
from bot.ports import ChatError, Message
from bot.store import Operation, OutboxMessage

log = logging.getLogger("runback.cards")


def approval_view(approval: Any) -> dict[str, Any]:
    return {
        "id": approval.id,
        "status": approval.status,
        "decided_by": approval.decided_by,
        "decided_at": approval.decided_at,
        "expires_at": approval.expires_at,
        "action": approval.action,
    }


# -- the outbox: what the channel is owed, told to Slack off the critical path ----------------

BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
UPDATES_BEFORE_NEW_MESSAGE = 3  # then the final state goes out as a new message
STALE_TRIES = 10  # tries to correct the card that new message replaced
PARENT_WAIT_S = 5.0  # a reply waits this long for its card to be in Slack
MAX_TEXT_CHARS = 39_000  # Slack refuses longer text with msg_too_long (limit 40,000)
# The card's message is gone or not ours to edit: post the state anew.
# https://api.slack.com/methods/chat.update#errors
GONE = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})
# Slack will not take anything in this channel until a person acts (invite the bot, unarchive).
# https://api.slack.com/methods/chat.postMessage#errors
NO_ACCESS = frozenset({"not_in_channel", "channel_not_found", "is_archived"})


def operation_card(operation_id: str) -> str:
    return f"operation:{operation_id}"


def incident_card(incident_id: str) -> str:
    return f"incident:{incident_id}"


def show(deps: Deps, card: str, channel: str, message: Message) -> None:
    """Make ``message`` the card's content: posted the first time, updated in place afterwards.

    Returns at once: the store records what the channel is owed and the courier tells Slack
    (retrying with backoff, honouring Retry-After), so a slow or failing Slack never delays the
    workflow, and the newest state wins once Slack answers."""
    deps.store.outbox.stage_card(card, channel, asdict(message), deps.clock.now())
    _kick(deps)


CardMessage = Callable[[Deps, Operation], Message]  # an operation's card, as it is now
MAX_REFRESHES = 5  # an operation never moves this often in one refresh; its next commit shows it


def total_seconds(operation: Operation) -> float | None:
    """From the request to the end, for a card ("Done in 1.2s"); None while it runs."""
    if operation.finished_at is None:
        return None
    return (operation.finished_at - operation.created_at).total_seconds()


@dataclass(frozen=True)
class OperationCard:
    """The one live card of a kind of operation: ``message`` renders it from the operation."""

    message: CardMessage

    def refresh(self, deps: Deps, operation_id: str, written: Operation | None = None) -> None:
        """Show the operation as it is now (first as ``written``, when the caller has it as its
        own write left it: one read fewer). The engine and a person (a card's button, an
        on-call /rollback) commit and refresh concurrently; one that read the operation just
        before the other's commit could stage its older picture last (a writer waiting for the
        database, say) and leave the card behind. So the operation is read again after staging
        and shown anew until it stands still."""
        shown: tuple[Any, ...] | None = None
        for _ in range(MAX_REFRESHES):
            operation = written or deps.store.operations.operation(operation_id)
            written = None  # after the first picture, what is stored
            if operation is None:
                return
            seen = (operation.state, operation.data, operation.finished_at)
            if seen == shown:
                return
            card = operation_card(operation.id)
            show(deps, card, operation.channel, self.message(deps, operation))
            shown = seen


def announce(deps: Deps, channel: str, message: Message, thread_of: str = "") -> None:
    """A new message (in the thread of card ``thread_of`` if given), delivered like a card."""
    deps.store.outbox.stage_post(channel, asdict(message), deps.clock.now(), thread_of=thread_of)
    _kick(deps)


def share_file(
    deps: Deps,
    channel: str,
    filename: str,
    content: str | bytes,
    title: str,
    comment: str,
    thread_of: str = "",
) -> None:
    """A file (postmortem, chart) in the channel, or in card ``thread_of``'s thread, delivered
    like a message: it survives a Slack outage and a restart."""
    upload: dict[str, str] = {"filename": filename, "title": title, "comment": comment}
    if isinstance(content, bytes):
        upload["content_b64"] = base64.b64encode(content).decode("ascii")
    else:
        upload["content"] = content
    deps.store.outbox.stage_post(channel, {"upload": upload}, deps.clock.now(), thread_of=thread_of)
    _kick(deps)


def tell_requester_if_unseen(deps: Deps, card: str, response_url: str) -> None:
    """Remember where to tell the requester privately if the card cannot be posted; tell them
    now if Slack already refused it."""
    deps.store.outbox.set_reply_url(card, response_url)
    row = deps.store.outbox.outbox_row(card)
    if row is not None and row.error in NO_ACCESS:
        _tell_requester(deps, card, row.channel, row.error)


def _kick(deps: Deps) -> None:
    courier = deps.courier
    if courier is not None and courier.running:
        courier.kick()
    else:  # no background courier (a script, a test of one workflow): deliver now
        deliver_due(deps)


def deliver_due(deps: Deps) -> None:
    """One pass over what Slack has not seen yet and is due now."""
    now = deps.clock.now()
    for row in deps.store.outbox.due_outbox(now):
        claim = timedelta(seconds=deps.config.slack.claim_s)  # then a dead courier's row is free
        claimed = deps.store.outbox.claim_outbox(row.id, now, now + claim)
        if claimed is not None:
            _deliver(deps, claimed)


def _key(row: OutboxMessage) -> str:
    return row.card or f"post:{row.id}"


def _deliver(deps: Deps, row: OutboxMessage) -> None:
    if "upload" in row.message:
        try:
            _upload(deps, row, row.message["upload"])
        except ChatError as error:
            _failed(deps, row, error)
        return
    message = Message(**row.message)
    try:
        try:
            _send(deps, row, message)
        except ChatError as error:
            if error.code != "msg_too_long":
                raise
            _send(deps, row, Message(message.text[:MAX_TEXT_CHARS] + "…", message.blocks))
    except ChatError as error:
        _failed(deps, row, error)


def _send(deps: Deps, row: OutboxMessage, message: Message) -> None:
    now = deps.clock.now()
    if row.shown >= row.version and row.stale_ts:  # only the replaced card is left to correct
        _correct_stale(deps, row, message, now)
        return
    if row.card and row.ts:
        try:
            deps.chat.update_card(row.channel, row.ts, message)
        except ChatError as error:
            if error.code not in GONE:
                raise
            log.warning("card %s: Slack says %s; posting it anew", row.card, error.code)
            row.ts = ""
        else:
            _succeeded(deps, row, now)
            return
    _post(deps, row, message, now)


def _where(deps: Deps, row: OutboxMessage, now: datetime) -> tuple[str, str | None] | None:
    """The channel and thread to post in; None (and a later try) while the card whose thread
    it belongs to is not in Slack yet."""
    if not row.thread_of:
        return row.channel, None
    parent = deps.store.outbox.outbox_row(row.thread_of)
    if parent is None or not parent.ts:
        deps.store.outbox.settle_outbox(row.id, now, due_at=now + timedelta(seconds=PARENT_WAIT_S))
        return None
    return parent.channel, parent.ts


def _upload(deps: Deps, row: OutboxMessage, upload: dict[str, str]) -> None:
    now = deps.clock.now()
    where = _where(deps, row, now)
    if where is None:
        return
    content: str | bytes = upload.get("content", "")
    if "content_b64" in upload:
        content = base64.b64decode(upload["content_b64"])
    channel, thread_ts = where
    deps.chat.upload(
        channel, thread_ts, upload["filename"], content, upload["title"], upload["comment"]
    )
    _succeeded(deps, row, now)


def _post(deps: Deps, row: OutboxMessage, message: Message, now: datetime) -> None:
    where = _where(deps, row, now)
    if where is None:
        return
    channel, thread_ts = where
    if row.uncertain_since:  # the last post's answer was lost: did Slack post it?
        found = _find_lost_post(deps, channel, row)
        if found:
            log.info("card %s: a post whose answer was lost did arrive", _key(row))
            row.ts, row.channel = found, channel
            if row.card:
                deps.chat.update_card(channel, found, message)
            _succeeded(deps, row, now)
            return
    if not row.uncertain_since:  # write-ahead: a crash during the post is a lost answer too
        deps.store.outbox.settle_outbox(
            row.id, now, keep_claim=True, uncertain_since=now.isoformat()
        )
    posted = deps.chat.post_card(channel, message, _key(row), thread_ts)
    row.ts, row.channel = posted.ts, posted.channel
    _succeeded(deps, row, now)


def _correct_stale(deps: Deps, row: OutboxMessage, message: Message, now: datetime) -> None:
    """The card that could not be updated still shows an old state: give it the newest one, so
    the channel never shows "starting" for an operation that has finished."""
    try:
        deps.chat.update_card(row.channel, row.stale_ts, message)
    except ChatError as error:
        if error.code not in GONE:
            raise
    deps.store.outbox.settle_outbox(row.id, now, stale_ts="", attempts=0, error="")


def _find_lost_post(deps: Deps, channel: str, row: OutboxMessage) -> str | None:
    try:
        return deps.chat.find_card(channel, _key(row), "")
    except ChatError as error:
        if error.code in ("ratelimited", "timeout", "unreachable") or error.maybe_sent:
            raise  # look again later
        # without channels:history the lookup is impossible: post (a rare duplicate beats
        # a channel that never learns the state)
        log.warning("cannot look for the lost post of %s: %s", _key(row), error.code)
        return None


def _succeeded(deps: Deps, row: OutboxMessage, now: datetime) -> None:
    if row.attempts:
        log.info("Slack took %s after %d failed attempt(s)", _key(row), row.attempts)
    deps.store.outbox.settle_outbox(
        row.id,
        now,
        ts=row.ts,
        channel=row.channel,
        shown=row.version,
        attempts=0,
        error="",
        uncertain_since="",
    )
    if row.card:
        _remember_ts(deps, row.card, row.ts, now)


def _remember_ts(deps: Deps, card: str, ts: str, now: datetime) -> None:
    """Threads, uploads and people find a card by its record's message_ts."""
    kind, _, ident = card.partition(":")
    if kind == "operation":
        deps.store.operations.remember_message_ts(ident, ts, now)
    elif kind == "incident":
        deps.store.incidents.remember_message_ts(ident, ts, now)


def _failed(deps: Deps, row: OutboxMessage, error: ChatError) -> None:
    """One log line per failure; the next attempt after a backoff (Slack's Retry-After when it
    gives one). A card that cannot be updated goes out as a new message after a few tries."""
    now = deps.clock.now()
    attempts = row.attempts + 1
    delay = error.retry_after_s or BACKOFF_S[min(attempts, len(BACKOFF_S)) - 1]
    fields: dict[str, Any] = {
        "attempts": attempts,
        "error": error.code[:64],
        "ts": row.ts,
        "uncertain_since": row.uncertain_since,  # as before this attempt's write-ahead
    }
    if error.maybe_sent and not row.ts:
        fields["uncertain_since"] = now.isoformat()
        delay = max(delay, deps.config.slack.lost_answer_wait_s)  # it may still land
    correcting = row.shown >= row.version  # only the replaced card was being corrected
    if correcting and attempts >= STALE_TRIES:
        fields["stale_ts"] = ""  # give up on the old card; the new one tells the truth
    elif (
        not correcting
        and row.ts
        and error.code != "ratelimited"
        and attempts >= UPDATES_BEFORE_NEW_MESSAGE
    ):
        fields["ts"] = ""  # the final state goes out as a new message
        fields["stale_ts"] = row.ts  # and the old card is corrected when Slack lets us
    if error.code in NO_ACCESS:
        delay = BACKOFF_S[-1]
    fields["due_at"] = now + timedelta(seconds=delay)
    deps.store.outbox.settle_outbox(row.id, now, **fields)
    log.warning(
        "Slack did not take %s in %s: %s (attempt %d, next in %.0f s)",
        _key(row),
        row.channel,
        error.code,
        attempts,
        delay,
    )
    if error.code in NO_ACCESS and row.card:
        _tell_requester(deps, row.card, row.channel, error.code)


def _tell_requester(deps: Deps, card: str, channel: str, code: str) -> None:
    url = deps.store.outbox.claim_telling_requester(card)
    if not url:
        return
    message = deps.renderer.message(
        "ephemeral", key=f"notice.card_not_posted.{code}", channel=channel
    )
    try:
        deps.chat.reply(url, message)
    except ChatError as error:
        log.warning("could not tell the requester that card %s is unseen: %s", card, error.code)


class Courier:
    """Delivers the outbox on its own thread: at once when kicked, and every ``interval_s`` for
    what waits on a backoff. ``hold`` marks activity (so tests and the console can wait for
    the delivery a change caused) and returns its release."""

    def __init__(
        self, deps: Deps, hold: Callable[[], Callable[[], None]], interval_s: float = 0.5
    ) -> None:
        self.deps = deps
        self.hold = hold
        self.interval_s = interval_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._held: Callable[[], None] | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="runback-courier", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def kick(self) -> None:
        with self._lock:
            if self._held is None:
                self._held = self.hold()
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            with self._lock:
                release, self._held = self._held, None
            try:
                if not self._stop.is_set():
                    deliver_due(self.deps)
            except Exception:
                log.exception("the Slack courier failed")
            finally:
                if release is not None:
                    release()
        with self._lock:
            release, self._held = self._held, None
        if release is not None:
            release()
