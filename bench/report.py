"""The bench's report: figures against their targets, as a table and as JSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.alerts import ALERT_MARKS, MONITORING_CALLS
from bench.common import SERVICE, ms
from bench.releases import HEALTHZ, MONITORING, SHORT


@dataclass
class Row:
    metric: str
    value: str
    target: str = ""
    ok: bool | None = None  # None: information only

    @property
    def verdict(self) -> str:
        return "" if self.ok is None else ("PASS" if self.ok else "MISS")


def rows_for(results: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    cold = results.get("cold_start")
    if cold:
        rows += [
            Row(
                "cold start: bot, launch -> first 200 ack (median)",
                f"{ms(cold['bot_s'])} ms",
                "< 1000 ms",
                cold["bot_s"] < 1.0,
            ),
            Row(
                "  bot, launch -> /ops help answered (median)",
                f"{ms(cold['bot_answer_s'])} ms" if "bot_answer_s" in cold else "-",
            ),
            Row("cold start: minimal Bolt app (median)", f"{ms(cold['minimal_s'])} ms"),
            Row(
                "cold start: bot / minimal",
                f"{cold['ratio']:.2f}x",
                "<= 1.5x",
                cold["ratio"] <= 1.5,
            ),
            Row(
                "  printed 'listening': bot / minimal",
                f"{ms(cold['bot_listening_s'])} / {ms(cold['minimal_listening_s'])} ms",
            ),
            Row("  bare `python -c pass`", f"{ms(cold['interpreter_s'])} ms"),
        ]
        rows += [
            Row(f"  import {label}", f"{ms(seconds)} ms")
            for label, seconds in cold["imports_s"].items()
        ]
    first = results.get("first_traffic")
    if first:
        rows += [
            Row("first /traffic of a fresh bot: ack", f"{ms(first['ack_s'])} ms"),
            Row("first /traffic of a fresh bot: answer posted", f"{ms(first['response_s'])} ms"),
        ]
    acks = results.get("ack_latency")
    if acks:
        where = "bot on a core of its own" if acks.get("own_core") else "shared cores"
        for key, label in (("ops_help", "/ops help"), ("traffic", f"/traffic {SERVICE}")):
            entry = acks[key]
            head = f"ack {label}, {acks['threads']} concurrent, {acks['requests']} req ({where})"
            rows += [
                Row(f"{head}: p50", f"{ms(entry['p50_s'])} ms"),
                Row(f"{head}: p99", f"{ms(entry['p99_s'])} ms", "< 60 ms", entry["p99_s"] < 0.06),
                Row(
                    f"  {label}: throughput / bot CPU per command",
                    f"{entry['throughput_rps']:.0f}/s / {ms(entry['bot_cpu_per_command_s'])} ms",
                ),
            ]
            if "shared_p99_s" in entry:
                rows.append(
                    Row(
                        f"  {label}: on cores shared with the emulators, p50 / p99",
                        f"{ms(entry['shared_p50_s'])} / {ms(entry['shared_p99_s'])} ms",
                    )
                )
        alone = acks["ops_help"].get("one_sender_p50_s")
        if alone is not None:
            rows.append(Row("ack /ops help, one sender: p50", f"{ms(alone)} ms"))
        floor = results.get("ack_floor")
        if floor:
            rows.append(
                Row(
                    "  the floor: a minimal Bolt app, same load, p50 / p99",
                    f"{ms(floor['p50_s'])} / {ms(floor['p99_s'])} ms",
                )
            )
            if "shared_p99_s" in floor:
                rows.append(
                    Row(
                        "  the floor on cores shared with the emulators: p99",
                        f"{ms(floor['shared_p99_s'])} ms",
                    )
                )
            if "one_sender_p50_s" in floor:
                rows.append(
                    Row(
                        "  the floor: a minimal Bolt app, one sender, p50",
                        f"{ms(floor['one_sender_p50_s'])} ms",
                    )
                )
        rows.append(
            Row(
                f"  all {acks['requests']} /traffic answers posted after",
                f"{ms(acks['traffic']['all_responses_s'])} ms",
            )
        )
    roll = results.get("rollback")
    if roll:
        rows.append(
            Row(
                "rollback (a): command sent -> traffic PATCH (median)",
                f"{ms(roll['to_patch_s'])} ms",
                "< 150 ms",
                roll["to_patch_s"] < 0.15,
            )
        )
        rows += [
            Row(
                f"  Cloud Run read {read['api']}: arrived / next request after",
                f"+{ms(read['at_s'])} / {ms(read['to_next_request_s'])} ms",
            )
            for read in roll["reads"]
        ]
        rows += [
            Row(
                "rollback (b): operation done -> 'shifted' card update (median)",
                f"{ms(roll['done_to_update_s'])} ms",
                "< 150 ms",
                roll["done_to_update_s"] < 0.15,
            ),
            Row("  (a) + (b)", f"{ms(roll['to_patch_s'] + roll['done_to_update_s'])} ms"),
            Row(
                "  healthz probe -> final card update (median)",
                f"{ms(roll['probe_to_final_s'])} ms",
            ),
            Row("  command sent -> final card, end to end (median)", f"{ms(roll['total_s'])} ms"),
        ]
    limited = results.get("rollback_429")
    if limited:
        rows += [
            Row(
                "rollback, Slack answering 429 to card updates: command -> PATCH",
                f"{ms(limited['to_patch_s'])} ms",
                "< 150 ms",
                limited["to_patch_s"] < 0.15,
            ),
            Row(
                "  -> health check / -> final card (after Retry-After 2 s)",
                f"{ms(limited['to_probe_s'])} / {ms(limited['to_final_card_s'])} ms",
            ),
        ]
    fresh = results.get("fresh_bot_rollback")
    if fresh:
        rows.append(
            Row(
                "  /rollback as a fresh bot's first command: (a) / end to end",
                f"{ms(fresh['to_patch_s'])} / {ms(fresh['total_s'])} ms",
            )
        )
    alerts = results.get("alerts")
    if alerts:
        warmup = alerts["warmup"]
        rows += [
            Row(
                "incident: alert POST -> traffic PATCH (median)",
                f"{ms(alerts['to_patch_s'])} ms",
                "< 200 ms",
                alerts["to_patch_s"] < 0.2,
            ),
            Row(
                f"  p90 / max of {alerts['runs']} alerts",
                f"{ms(alerts['to_patch_p90_s'])} / {ms(alerts['to_patch_max_s'])} ms",
            ),
            Row("  alert answered 200 (median)", f"{ms(alerts['answer_s'])} ms"),
        ]
        rows += [
            Row(f"  -> {label} (median)", f"+{ms(alerts['marks_s'][api])} ms")
            for api, label in ALERT_MARKS
        ]
        rows += [
            Row("  alert POST -> postmortem posted (median)", f"{ms(alerts['total_s'])} ms"),
            Row(
                "  a fresh bot's first alert (warm-up): 200 / PATCH",
                f"{ms(warmup['answer_s'])} / {ms(warmup['to_patch_s'])} ms",
            ),
        ]
    memory = results.get("memory")
    if memory:
        total = memory["commands"]
        after = memory[f"after_{total}_kb"] / 1024
        rows += [
            Row("RSS of a fresh bot after its first ack", f"{memory['at_start_kb'] / 1024:.1f} MB"),
            Row(
                "  after its first /traffic (Google libraries)",
                f"{memory['after_first_traffic_kb'] / 1024:.1f} MB",
            ),
            Row(f"RSS after {total} slash commands", f"{after:.1f} MB", "< 150 MB", after < 150),
            Row(
                f"  after {2 * total} (growth check)",
                f"{memory[f'after_{2 * total}_kb'] / 1024:.1f} MB",
            ),
            Row("  peak RSS (VmHWM)", f"{memory['peak_kb'] / 1024:.1f} MB"),
        ]
    judge = results.get("release_judgement")
    if judge:
        marks = " / ".join(f"+{ms(at)}" for at in judge["marks_s"].values())
        engine = " / ".join(
            f"{e['percent']}%: {e['monitoring']} + {e['probes']}"
            + (
                f", {ms(e['monitoring_to_probe_s'])} ms"
                if e["monitoring_to_probe_s"] is not None
                else ""
            )
            for e in judge["engine"]
        )
        rows += [
            Row(
                f"release judgement (judging.judge_green), median of {judge['runs']}",
                f"{ms(judge['wall_s'])} ms",
            ),
            Row(
                "  p90 / max",
                f"{ms(judge['wall_p90_s'])} / {ms(judge['wall_max_s'])} ms",
            ),
            Row(
                "  requests "
                + ", ".join(
                    SHORT.get(api, api)
                    for api in (label.split(". ", 1)[1] for label in judge["marks_s"])
                )
                + " arrive after (median)",
                f"{marks} ms",
            ),
            Row(
                "  the first one (creates the Monitoring client)",
                f"{ms(judge['first_wall_s'])} ms",
            ),
            Row(
                "release judgement: requests per judgement",
                ", ".join(judge["calls"]),
                f"{MONITORING_CALLS} (or 1, no point yet) Monitoring + 1 probe",
                judge["exact"],
            ),
            Row(
                "  engine's judgements: calls, 1st Monitoring -> /healthz",
                engine,
            ),
        ]
    sandbox = results.get("sandbox_release")
    if sandbox:
        speed = f"{sandbox['speed']:g}"
        calls = sandbox["calls"]
        judgements = sandbox["judgements"]
        rows += [
            Row(
                f"sandbox release at speed {speed}: /deploy -> succeeded, real time",
                f"{sandbox['total_s']:.2f} s",
            ),
            Row(
                "  sandbox time elapsed / configured waits",
                f"{sandbox['sandbox_s']:.0f} / {sandbox['configured_waits_s']:.0f} s",
            ),
            Row(
                f"  real time beyond the waits ({sandbox['configured_waits_s']:.0f} s / {speed})",
                f"{sandbox['overhead_s']:.2f} s",
            ),
            Row("    Approve 100% click -> 100% applied", f"{sandbox['approval_s']:.2f} s"),
            Row(
                "    bot's request bursts (lower bound of its busy time)",
                f"{sandbox['busy_s']:.2f} s",
            ),
            Row(
                f"    rest: next {sandbox['tick_s']:g} s engine tick "
                f"(= {sandbox['tick_s'] * sandbox['speed']:g} s sandbox) after each due, polling",
                f"{sandbox['rest_s']:.2f} s",
            ),
            Row(
                f"  {len(judgements)} judgements ("
                + "/".join(str(j["percent"]) for j in judgements)
                + "%): judged after due by (median)",
                f"{sandbox['late_median_s']:.0f} s sandbox = "
                f"{sandbox['late_median_s'] / sandbox['speed']:.2f} s real",
            ),
            Row(
                "  requests: PATCH / Monitoring / healthz (smoke + judgements)",
                f"{calls['run.services.patch']} / {calls[MONITORING]} / {calls[HEALTHZ]}",
            ),
        ]
    return rows


def print_table(rows: list[Row]) -> None:
    headers = ("metric", "value", "target", "")
    widths = [
        max(len(headers[0]), *(len(r.metric) for r in rows)),
        max(len(headers[1]), *(len(r.value) for r in rows)),
        max(len(headers[2]), *(len(r.target) for r in rows)),
        4,
    ]
    line = "  ".join("-" * w for w in widths)
    print(line)
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print(line)
    for row in rows:
        cells = (
            row.metric.ljust(widths[0]),
            row.value.rjust(widths[1]),
            row.target.ljust(widths[2]),
            row.verdict,
        )
        print("  ".join(cells).rstrip())
    print(line)


def print_timeline(title: str, timeline: list[tuple[float, str]]) -> None:
    print(f"\nRequests the bot sent during {title}:")
    for offset, api in timeline:
        print(f"  +{offset:7.1f}  {api}")
