"""The Slack Web API emulator, driven by the real slack_sdk WebClient over a real socket."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from bot.sandbox.emulator.http import Fault
from bot.sandbox.emulator.server import Emulator
from bot.sandbox.emulator.slack_api import BOT_USER_ID, SlackEmulator

# slack_sdk warns when blocks come without fallback text; some tests do that on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:The top-level `text` argument:UserWarning")

TOKEN = "xoxb-sandbox"
SECTION = {"type": "section", "text": {"type": "mrkdwn", "text": "*Rollback* done"}}
APPROVE = {
    "type": "actions",
    "elements": [
        {
            "type": "button",
            "text": {"type": "plain_text", "text": "Approve"},
            "action_id": "approve",
            "value": "op-1",
            "style": "primary",
        }
    ],
}


@pytest.fixture
def slack(emulator: Emulator) -> SlackEmulator:
    emulator.slack.add_channel("C0INCIDENTS", "incidents", members=[BOT_USER_ID])
    emulator.slack.add_channel("C0DEPLOYS", "deploys", members=[BOT_USER_ID])
    emulator.slack.add_channel("C0OUTSIDE", "outside")  # Runback was never invited here
    emulator.slack.add_user("U0ALICE", "alice", "Alice Lead", locale="es-ES")
    emulator.slack.add_user("U0BOB", "bob")
    emulator.slack.add_usergroup("S0LEADS", "tech-leads", ["U0ALICE"])
    return emulator.slack


@pytest.fixture
def client(emulator: Emulator, slack: SlackEmulator) -> WebClient:
    return WebClient(token=TOKEN, base_url=f"{emulator.url}/api/")


def error_of(call: Any, *args: Any, **kwargs: Any) -> SlackApiError:
    with pytest.raises(SlackApiError) as info:
        call(*args, **kwargs)
    return info.value


# -- identity and auth ---------------------------------------------------------------------------


def test_auth_test_names_the_bot(client: WebClient, emulator: Emulator) -> None:
    identity = client.auth_test()
    assert identity["user_id"] == BOT_USER_ID
    assert (identity["bot_id"], identity["team_id"]) == ("B0RUNBACK", "T0SANDBOX")
    assert identity["team"] == "Runback sandbox"
    assert identity["url"] == f"{emulator.url}/"


def test_a_wrong_or_missing_token_is_refused(emulator: Emulator, slack: SlackEmulator) -> None:
    base_url = f"{emulator.url}/api/"
    wrong = WebClient(token="xoxb-wrong", base_url=base_url)
    assert (
        error_of(wrong.chat_postMessage, channel="#incidents", text="hi").response["error"]
        == "invalid_auth"
    )
    assert error_of(WebClient(base_url=base_url).auth_test).response["error"] == "not_authed"
    assert slack.messages() == []


def test_unknown_methods_answer_unknown_method(client: WebClient) -> None:
    assert error_of(client.api_call, "chat.nope").response["error"] == "unknown_method"


# -- messages ------------------------------------------------------------------------------------


def test_post_update_and_history(client: WebClient, slack: SlackEmulator) -> None:
    posted = client.chat_postMessage(
        channel="#incidents", text="rolling back", blocks=[SECTION, APPROVE]
    )
    assert posted["channel"] == "C0INCIDENTS"
    assert posted["message"]["bot_id"] == "B0RUNBACK"
    updated = client.chat_update(
        channel="C0INCIDENTS", ts=posted["ts"], text="rolled back", blocks=[SECTION]
    )
    assert updated["ts"] == posted["ts"]
    [message] = slack.messages("incidents")
    assert message["text"] == "rolled back"
    assert message["blocks"] == [SECTION]
    assert (message["version"], message["source"], message["user"]) == (
        2,
        "chat.postMessage",
        BOT_USER_ID,
    )
    assert message["history"][0]["text"] == "rolling back"
    assert message["history"][0]["blocks"] == [SECTION, APPROVE]
    assert slack.message("#incidents", posted["ts"]) == message


def test_ts_values_increase(client: WebClient) -> None:
    first = client.chat_postMessage(channel="incidents", text="one")["ts"]
    second = client.chat_postMessage(channel="incidents", text="two")["ts"]
    assert first == "1764270000.000100"
    assert float(second) > float(first)


def test_update_keeps_blocks_it_was_not_given(client: WebClient, slack: SlackEmulator) -> None:
    ts = client.chat_postMessage(channel="#incidents", text="a", blocks=[SECTION])["ts"]
    client.chat_update(channel="C0INCIDENTS", ts=ts, text="b")
    message = slack.message("C0INCIDENTS", ts)
    assert message is not None
    assert (message["text"], message["blocks"]) == ("b", [SECTION])


def test_threads_and_ephemeral_messages(client: WebClient, slack: SlackEmulator) -> None:
    root = client.chat_postMessage(channel="#incidents", text="incident")["ts"]
    reply = client.chat_postMessage(channel="#incidents", text="timeline", thread_ts=root)["ts"]
    nested = client.chat_postMessage(channel="#incidents", text="more", thread_ts=reply)["ts"]
    note = client.chat_postEphemeral(channel="#incidents", user="U0BOB", text="only you")
    thread = slack.messages("incidents", thread_ts=root)
    assert [m["ts"] for m in thread] == [root, reply, nested]
    assert {m["thread_ts"] for m in thread[1:]} == {root}
    ephemeral = slack.message("incidents", note["message_ts"])
    assert ephemeral is not None
    assert (ephemeral["ephemeral_to"], ephemeral["source"]) == ("U0BOB", "chat.postEphemeral")
    assert len(slack.messages("incidents", include_ephemeral=False)) == 3
    assert (
        error_of(
            client.chat_update, channel="C0INCIDENTS", ts=note["message_ts"], text="x"
        ).response["error"]
        == "message_not_found"
    )


def test_messages_to_a_user_id_go_to_their_dm(client: WebClient, slack: SlackEmulator) -> None:
    posted = client.chat_postMessage(channel="U0ALICE", text="please approve")
    assert posted["channel"] == "D0ALICE"
    assert [m["text"] for m in slack.messages("U0ALICE")] == ["please approve"]


@pytest.mark.parametrize(
    ("call", "kwargs", "error"),
    [
        ("chat_postMessage", {"channel": "#nowhere", "text": "x"}, "channel_not_found"),
        (
            "chat_postMessage",
            {"channel": "#incidents", "text": "x", "thread_ts": "1.000001"},
            "thread_not_found",
        ),
        ("chat_postMessage", {"channel": "#incidents"}, "no_text"),
        ("chat_postMessage", {"channel": "#incidents", "text": "x" * 40_001}, "msg_too_long"),
        ("chat_postMessage", {"channel": "#incidents", "blocks": [SECTION] * 51}, "invalid_blocks"),
        (
            "chat_postEphemeral",
            {"channel": "#incidents", "user": "U0NOBODY", "text": "x"},
            "user_not_found",
        ),
        (
            "chat_update",
            {"channel": "C0INCIDENTS", "ts": "1.000001", "text": "x"},
            "message_not_found",
        ),
        # chat.update takes channel ids only (slackapi/python-slack-sdk#1495)
        (
            "chat_update",
            {"channel": "#incidents", "ts": "1.000001", "text": "x"},
            "channel_not_found",
        ),
        ("chat_postMessage", {"channel": "#outside", "text": "x"}, "not_in_channel"),
        (
            "chat_postEphemeral",
            {"channel": "#outside", "user": "U0BOB", "text": "x"},
            "not_in_channel",
        ),
        ("conversations_history", {"channel": "C0OUTSIDE"}, "not_in_channel"),
        ("conversations_history", {"channel": "#incidents"}, "channel_not_found"),
        (
            "chat_getPermalink",
            {"channel": "#incidents", "message_ts": "1.000001"},
            "message_not_found",
        ),
        ("users_info", {"user": "U0NOBODY"}, "user_not_found"),
        ("conversations_info", {"channel": "C0NOWHERE"}, "channel_not_found"),
        ("usergroups_users_list", {"usergroup": "S0NONE"}, "no_such_subteam"),
    ],
)
def test_slack_errors(
    client: WebClient, slack: SlackEmulator, call: str, kwargs: dict[str, Any], error: str
) -> None:
    failure = error_of(getattr(client, call), **kwargs)
    assert failure.response.status_code == 200
    assert failure.response["error"] == error
    assert slack.messages() == []


def test_only_the_bots_messages_can_be_updated(client: WebClient, slack: SlackEmulator) -> None:
    human = slack.add_message("#incidents", "U0ALICE", "I'm on it")
    failure = error_of(client.chat_update, channel="C0INCIDENTS", ts=human["ts"], text="x")
    assert failure.response["error"] == "cant_update_message"


def test_permalink(client: WebClient, emulator: Emulator) -> None:
    root = client.chat_postMessage(channel="#incidents", text="incident")["ts"]
    link = client.chat_getPermalink(channel="C0INCIDENTS", message_ts=root)["permalink"]
    assert link == f"{emulator.url}/archives/C0INCIDENTS/p{root.replace('.', '')}"


# -- Block Kit validation ------------------------------------------------------------------------

BUTTON_WITHOUT_TEXT = {"type": "actions", "elements": [{"type": "button", "action_id": "go"}]}


@pytest.mark.parametrize(
    ("block", "complaint"),
    [
        ({"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}, "3000"),
        ({"type": "carousel_of_doom"}, "unknown block type"),
        (BUTTON_WITHOUT_TEXT, "text"),
        ({"type": "actions", "elements": [{"type": "nope"}]}, "unsupported type"),
        ({"type": "header", "text": {"type": "mrkdwn", "text": "x"}}, "plain_text"),
        ({**SECTION, "acessory": APPROVE["elements"][0]}, "additional property: acessory"),
    ],
)
def test_invalid_blocks_are_rejected(
    client: WebClient, slack: SlackEmulator, block: dict[str, Any], complaint: str
) -> None:
    failure = error_of(
        client.chat_postMessage, channel="#incidents", text="x", blocks=[SECTION, block]
    )
    assert failure.response["error"] == "invalid_blocks"
    [message] = failure.response["response_metadata"]["messages"]
    assert complaint in message
    assert "json-pointer:/blocks/1" in message
    assert slack.messages() == []


def test_blocks_are_validated_on_every_path(client: WebClient, slack: SlackEmulator) -> None:
    ts = client.chat_postMessage(channel="#incidents", text="x")["ts"]
    bad = [BUTTON_WITHOUT_TEXT]
    assert (
        error_of(client.chat_update, channel="C0INCIDENTS", ts=ts, blocks=bad).response["error"]
        == "invalid_blocks"
    )
    assert (
        error_of(
            client.chat_postEphemeral, channel="#incidents", user="U0BOB", blocks=bad
        ).response["error"]
        == "invalid_blocks"
    )
    assert [m["version"] for m in slack.messages()] == [1]


def test_blocks_sent_as_a_form_encoded_json_string(client: WebClient, slack: SlackEmulator) -> None:
    form = {"channel": "#deploys", "text": "x", "blocks": json.dumps([SECTION, APPROVE])}
    client.api_call("chat.postMessage", data=form)
    assert slack.messages("deploys")[0]["blocks"] == [SECTION, APPROVE]
    failure = error_of(client.api_call, "chat.postMessage", data={**form, "blocks": "[{not json"})
    assert failure.response["error"] == "invalid_blocks_format"


# -- users, user groups, conversations ---------------------------------------------------------


def test_users_info_with_locale(client: WebClient) -> None:
    user = client.users_info(user="U0ALICE", include_locale=True)["user"]
    assert (user["name"], user["real_name"], user["locale"]) == ("alice", "Alice Lead", "es-ES")
    assert "locale" not in client.users_info(user="U0ALICE")["user"]


def test_usergroups(client: WebClient) -> None:
    [group] = client.usergroups_list(include_users=True)["usergroups"]
    assert (group["id"], group["handle"], group["users"]) == ("S0LEADS", "tech-leads", ["U0ALICE"])
    assert "users" not in client.usergroups_list()["usergroups"][0]
    assert client.usergroups_users_list(usergroup="S0LEADS")["users"] == ["U0ALICE"]


def test_conversations_info(client: WebClient) -> None:
    channel = client.conversations_info(channel="C0INCIDENTS")["channel"]
    assert (channel["name"], channel["is_channel"], channel["is_im"]) == ("incidents", True, False)


# -- views -------------------------------------------------------------------------------------

MODAL = {
    "type": "modal",
    "callback_id": "rollback",
    "title": {"type": "plain_text", "text": "Rollback"},
    "submit": {"type": "plain_text", "text": "Roll back"},
    "blocks": [
        {
            "type": "input",
            "block_id": "reason",
            "label": {"type": "plain_text", "text": "Reason"},
            "element": {"type": "plain_text_input", "action_id": "reason"},
        }
    ],
}


def test_views_open_and_update(client: WebClient, slack: SlackEmulator) -> None:
    trigger = slack.issue_trigger_id("U0ALICE")
    opened = client.views_open(trigger_id=trigger, view=MODAL)["view"]
    assert opened["id"].startswith("V")
    assert slack.views()[0]["user"] == "U0ALICE"
    title = {"type": "plain_text", "text": "Rolling back"}
    client.views_update(view_id=opened["id"], hash=opened["hash"], view={**MODAL, "title": title})
    [record] = slack.views()
    assert (record["version"], record["view"]["title"]) == (2, title)
    stale = error_of(client.views_update, view_id=opened["id"], hash=opened["hash"], view=MODAL)
    assert stale.response["error"] == "hash_conflict"


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"title": {"type": "plain_text", "text": "x" * 25}}, "title"),
        ({"submit": None}, "submit"),
        ({"blocks": [BUTTON_WITHOUT_TEXT]}, "json-pointer:/view/blocks/0"),
        ({"blocks": []}, "between 1 and 100 blocks"),
    ],
)
def test_views_open_validates_the_view(
    client: WebClient, slack: SlackEmulator, change: dict[str, Any], complaint: str
) -> None:
    view = {k: v for k, v in {**MODAL, **change}.items() if v is not None}
    trigger = slack.issue_trigger_id("U0ALICE")
    failure = error_of(client.views_open, trigger_id=trigger, view=view)
    assert failure.response["error"] == "invalid_arguments"
    assert complaint in " ".join(failure.response["response_metadata"]["messages"])
    assert slack.views() == []


def test_views_open_needs_a_trigger_id(client: WebClient) -> None:
    failure = error_of(client.views_open, trigger_id="", view=MODAL)
    assert failure.response["error"] == "invalid_arguments"


def test_a_trigger_id_is_exchanged_once_within_three_seconds(
    client: WebClient, slack: SlackEmulator, emulator: Emulator
) -> None:
    trigger = slack.issue_trigger_id("U0ALICE")
    client.views_open(trigger_id=trigger, view=MODAL)
    again = error_of(client.views_open, trigger_id=trigger, view=MODAL)
    assert again.response["error"] == "exchanged_trigger_id"
    stale = slack.issue_trigger_id("U0ALICE", issued_at=time.time() - 3.5)
    assert error_of(client.views_open, trigger_id=stale, view=MODAL).response["error"] == (
        "expired_trigger_id"
    )
    made_up = error_of(client.views_open, trigger_id="12345.98765.abcd2358fdea", view=MODAL)
    assert made_up.response["error"] == "invalid_trigger_id"
    assert len(slack.views()) == 1
    issued = requests.post(f"{emulator.url}/_emulator/slack/triggers", json={"user": "U0BOB"})
    opened = client.views_open(trigger_id=issued.json()["trigger_id"], view=MODAL)["view"]
    assert slack.views()[-1]["id"] == opened["id"] and slack.views()[-1]["user"] == "U0BOB"


# -- files ---------------------------------------------------------------------------------------


def test_files_upload_v2_posts_into_the_thread(client: WebClient, slack: SlackEmulator) -> None:
    root = client.chat_postMessage(channel="#incidents", text="incident")["ts"]
    result = client.files_upload_v2(
        channel="C0INCIDENTS",
        thread_ts=root,
        filename="postmortem.md",
        title="Postmortem draft",
        content="# Postmortem\n\nwa-backend rolled back.\n",
        initial_comment="Draft postmortem",
    )
    file_id = result["file"]["id"]
    [stored] = slack.files()
    assert (stored["id"], stored["title"], stored["channels"]) == (
        file_id,
        "Postmortem draft",
        ["C0INCIDENTS"],
    )
    assert stored["content"].startswith("# Postmortem")
    [_, message] = slack.messages("incidents", thread_ts=root)
    assert (message["source"], message["text"], message["thread_ts"]) == (
        "file",
        "Draft postmortem",
        root,
    )
    assert message["files"][0]["name"] == "postmortem.md"


def test_binary_uploads_keep_their_bytes(client: WebClient, slack: SlackEmulator) -> None:
    data = bytes(range(256))
    file_id = client.files_upload_v2(channel="C0DEPLOYS", filename="dump.bin", file=data)["file"][
        "id"
    ]
    assert slack.file_content(file_id) == data


def test_uploads_are_shared_by_channel_id_only(client: WebClient) -> None:
    failure = error_of(client.files_upload_v2, channel="#deploys", filename="a.md", content="x")
    assert failure.response["error"] == "channel_not_found"
    failure = error_of(client.files_upload_v2, channel="C0OUTSIDE", filename="a.md", content="x")
    assert failure.response["error"] == "not_in_channel"


def test_an_upload_is_a_file_only_once_completed(client: WebClient, slack: SlackEmulator) -> None:
    """files_upload_v2's three steps: a begun upload (its bytes maybe still on their way) is
    not listed; the completed one is, with its content (a postmortem read too early was
    empty)."""
    begun = client.files_getUploadURLExternal(filename="postmortem.md", length=5)
    assert slack.files() == []
    assert requests.post(begun["upload_url"], data=b"draft", timeout=5).status_code == 200
    assert slack.files() == [], "uploaded, not completed"
    client.files_completeUploadExternal(files=[{"id": begun["file_id"]}], channel_id="C0DEPLOYS")
    [listed] = slack.files()
    assert (listed["id"], listed["content"]) == (begun["file_id"], "draft")


def test_complete_upload_of_an_unknown_file(client: WebClient) -> None:
    failure = error_of(client.files_completeUploadExternal, files=[{"id": "F404"}])
    assert failure.response["error"] == "file_not_found"


# -- response_url ------------------------------------------------------------------------------


def test_response_url_ephemeral_and_in_channel(slack: SlackEmulator) -> None:
    url = slack.new_response_url("#incidents", "U0BOB")
    assert requests.post(url, json={"text": "only bob"}, timeout=5).status_code == 200
    reply = requests.post(url, json={"response_type": "in_channel", "blocks": [SECTION]}, timeout=5)
    assert reply.json() == {"ok": True}
    ephemeral, visible = slack.messages("incidents")
    assert (ephemeral["ephemeral_to"], ephemeral["source"]) == ("U0BOB", "response_url")
    assert (visible["ephemeral_to"], visible["blocks"]) == (None, [SECTION])


def test_response_url_replace_and_delete_original(client: WebClient, slack: SlackEmulator) -> None:
    ts = client.chat_postMessage(channel="#incidents", text="approve?", blocks=[APPROVE])["ts"]
    url = slack.new_response_url("C0INCIDENTS", "U0ALICE", message_ts=ts)
    requests.post(url, json={"replace_original": True, "text": "approved"}, timeout=5)
    message = slack.message("C0INCIDENTS", ts)
    assert message is not None
    assert (message["text"], message["version"], message["blocks"]) == ("approved", 2, [APPROVE])
    requests.post(url, json={"delete_original": True}, timeout=5)
    assert slack.messages("incidents") == []


def test_response_url_validates_and_is_used_up(slack: SlackEmulator) -> None:
    url = slack.new_response_url("#incidents", "U0BOB")
    bad = requests.post(url, json={"blocks": [BUTTON_WITHOUT_TEXT]}, timeout=5)
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_blocks")
    for n in range(5):
        assert requests.post(url, json={"text": f"#{n}"}, timeout=5).status_code == 200
    spent = requests.post(url, json={"text": "sixth"}, timeout=5)
    assert (spent.status_code, spent.json()) == (404, {"ok": False, "error": "used_up"})
    assert len(slack.messages()) == 5


# -- injected faults -------------------------------------------------------------------------


def inject(emulator: Emulator, api: str, status: int, times: int = 1) -> None:
    fault = {"api": api, "status": status, "times": times}
    requests.post(f"{emulator.url}/_emulator/faults", json=fault, timeout=5).raise_for_status()


def test_rate_limit_surfaces_without_a_retry_handler(client: WebClient, emulator: Emulator) -> None:
    inject(emulator, "slack.chat.postMessage", 429)
    failure = error_of(client.chat_postMessage, channel="#incidents", text="x")
    assert (failure.response.status_code, failure.response["error"]) == (429, "ratelimited")
    assert failure.response.headers["Retry-After"] == "1"
    assert emulator.slack.messages() == []


def test_rate_limit_is_retried_by_the_retry_handler(
    emulator: Emulator, slack: SlackEmulator
) -> None:
    client = WebClient(
        token=TOKEN,
        base_url=f"{emulator.url}/api/",
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)],
    )
    inject(emulator, "slack.chat.postMessage", 429)
    assert client.chat_postMessage(channel="#incidents", text="x")["ok"]
    assert len(emulator.router.calls.list("slack.chat.postMessage")) == 2
    assert [m["text"] for m in slack.messages()] == ["x"]


def test_server_errors_look_like_slacks(client: WebClient, emulator: Emulator) -> None:
    inject(emulator, "slack.users.info", 503)
    failure = error_of(client.users_info, user="U0ALICE")
    assert (failure.response.status_code, failure.response["error"]) == (503, "fatal_error")


# -- control API -------------------------------------------------------------------------------


def test_control_api_seeds_and_reads(emulator: Emulator, client: WebClient) -> None:
    base = f"{emulator.url}/_emulator/slack"
    requests.post(
        f"{base}/channels",
        json={"id": "C0OPS", "name": "#ops", "members": [BOT_USER_ID]},
        timeout=5,
    )
    requests.post(
        f"{base}/users", json={"id": "U0CAROL", "name": "carol", "locale": "es-ES"}, timeout=5
    )
    requests.post(
        f"{base}/usergroups",
        json={"id": "S0ONCALL", "handle": "oncall", "users": ["U0CAROL"]},
        timeout=5,
    )
    root = client.chat_postMessage(channel="#ops", text="root")["ts"]
    client.chat_postMessage(channel="C0OPS", text="reply", thread_ts=root)
    client.chat_postMessage(channel="#incidents", text="elsewhere")
    thread = requests.get(
        f"{base}/messages", params={"channel": "C0OPS", "thread_ts": root}, timeout=5
    ).json()
    assert [m["text"] for m in thread] == ["root", "reply"]
    assert client.users_info(user="U0CAROL", include_locale=True)["user"]["locale"] == "es-ES"
    assert client.usergroups_users_list(usergroup="S0ONCALL")["users"] == ["U0CAROL"]
    url = requests.post(
        f"{base}/response_urls", json={"channel": "C0OPS", "user": "U0CAROL"}, timeout=5
    ).json()["url"]
    assert requests.post(url, json={"text": "hi"}, timeout=5).ok
    requests.delete(f"{base}/messages", timeout=5)
    assert requests.get(f"{base}/messages", timeout=5).json() == []
    assert requests.get(f"{base}/views", timeout=5).json() == []
    assert requests.get(f"{base}/files", timeout=5).json() == []
    assert emulator.router.calls.list("_emulator.slack.messages.list") == []


# -- what a real workspace refuses ----------------------------------------------------------------


def test_the_bot_posts_only_where_it_was_invited(client: WebClient, slack: SlackEmulator) -> None:
    assert client.conversations_info(channel="C0OUTSIDE")["channel"]["is_member"] is False
    failure = error_of(client.chat_postMessage, channel="C0OUTSIDE", text="card")
    assert failure.response["error"] == "not_in_channel"
    assert slack.messages("C0OUTSIDE") == []

    slack.invite("C0OUTSIDE")  # /invite @Runback

    assert client.conversations_info(channel="C0OUTSIDE")["channel"]["is_member"] is True
    assert client.chat_postMessage(channel="C0OUTSIDE", text="card")["channel"] == "C0OUTSIDE"


def test_user_groups_need_a_paid_plan(emulator: Emulator, client: WebClient) -> None:
    assert client.usergroups_list(include_users=True)["usergroups"]
    requests.post(f"{emulator.url}/_emulator/slack/plan", json={"plan": "free"}, timeout=5)
    for call, kwargs in (
        (client.usergroups_list, {"include_users": True}),
        (client.usergroups_users_list, {"usergroup": "S0LEADS"}),
    ):
        assert error_of(call, **kwargs).response["error"] == "paid_teams_only"


def test_history_returns_message_metadata_when_asked(client: WebClient) -> None:
    tag = {"event_type": "runback_card", "event_payload": {"card": "operation:1"}}
    ts = client.chat_postMessage(channel="C0INCIDENTS", text="card", metadata=tag)["ts"]
    client.chat_postMessage(channel="C0INCIDENTS", text="reply", thread_ts=ts)

    plain = client.conversations_history(channel="C0INCIDENTS")["messages"]
    tagged = client.conversations_history(channel="C0INCIDENTS", include_all_metadata=True)

    assert [m["text"] for m in plain] == ["card"], "replies are not in the channel's history"
    assert "metadata" not in plain[0]
    assert tagged["messages"][0]["metadata"] == tag


def test_rate_limit_answers_with_the_injected_retry_after(
    emulator: Emulator, client: WebClient
) -> None:
    emulator.router.faults.add(Fault(api="slack.chat.update", status=429, message="7", times=1))
    ts = client.chat_postMessage(channel="C0INCIDENTS", text="card")["ts"]
    failure = error_of(client.chat_update, channel="C0INCIDENTS", ts=ts, text="x")
    assert failure.response.status_code == 429
    assert failure.response["error"] == "ratelimited"
    assert failure.response.headers["Retry-After"] in ("7", ["7"])
