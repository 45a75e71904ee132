"""What the Cloud Run emulator refuses in a request before anything changes: a PATCH body parsed
strictly into a ``run_v2.Service``, its ``updateMask`` (AIP-161), a new template's containers and
images, a traffic split, and the arguments of ``seed_service``."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from google.cloud import run_v2
from google.protobuf import json_format

from bot.sandbox.emulator.cloudrun_model import LATEST, REVISION, UNSPECIFIED
from bot.sandbox.emulator.http import HttpError

# Top-level Service fields a PATCH may change (snake_case); the rest are output-only here.
MUTABLE_FIELDS = frozenset(
    {
        "description",
        "labels",
        "annotations",
        "client",
        "client_version",
        "ingress",
        "launch_stage",
        "binary_authorization",
        "template",
        "traffic",
        "scaling",
        "invoker_iam_disabled",
        "default_uri_disabled",
        "custom_audiences",
    }
)

# ``[host[:port]/]repo-path[:tag][@digest]``, lower-case path components as Docker requires.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    rf"(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-fA-F0-9]{32,})?"
)


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def _parse_service_body(body: bytes, name: str) -> tuple[run_v2.Service, set[str]]:
    """The PATCH body as a Service (strictly parsed) and the top-level fields it sets."""
    try:
        raw = json.loads(body or b"{}")
    except ValueError as error:
        raise HttpError(400, "Invalid JSON payload received.") from error
    if not isinstance(raw, dict):
        raise HttpError(400, "Invalid JSON payload received: expected an object.")
    try:
        service = run_v2.Service.from_json(json.dumps(raw), ignore_unknown_fields=False)
    except json_format.ParseError as error:
        raise HttpError(400, f"Invalid JSON payload received. {error}") from error
    if service.name and service.name != name:
        raise HttpError(400, f"service.name {service.name} does not match the URL")
    return service, {_snake(key) for key in raw}


def _mask_paths(update_mask: str, body_fields: set[str]) -> list[str]:
    """The FieldMask paths to apply (snake_case); without a mask, the top-level body fields."""
    if not update_mask:
        return sorted(body_fields & MUTABLE_FIELDS)
    paths = [
        ".".join(_snake(part) for part in p.strip().split("."))
        for p in update_mask.split(",")
        if p.strip()
    ]
    bad = sorted(p for p in paths if not _valid_mask_path(p))
    if bad:
        raise HttpError(400, f"Invalid update mask path(s): {', '.join(bad)}")
    return paths


def _valid_mask_path(path: str) -> bool:
    """A mutable top-level field, then singular message fields down to any last field."""
    parts = path.split(".")
    if parts[0] not in MUTABLE_FIELDS:
        return False
    descriptor = run_v2.Service.meta.pb.DESCRIPTOR
    for i, part in enumerate(parts):
        field_ = descriptor.fields_by_name.get(part)
        if field_ is None:
            return False
        if i < len(parts) - 1:
            if field_.message_type is None or _is_repeated(field_):
                return False
            descriptor = field_.message_type
    return True


def _is_repeated(field_: Any) -> bool:
    if hasattr(field_, "is_repeated"):  # protobuf >= 5.28 (``label`` is gone from upb's)
        return bool(field_.is_repeated)
    return bool(field_.label == field_.LABEL_REPEATED)


def _validate_template(template: run_v2.RevisionTemplate) -> None:
    """What Cloud Run refuses in a new template: no container, an image that is no image, or
    several containers without exactly one ingress container (the one with a port)."""
    if not template.containers:
        raise HttpError(400, "template.containers: at least one container is required.")
    with_port = [c for c in template.containers if c.ports]
    if len(template.containers) > 1 and len(with_port) != 1:
        raise HttpError(
            400, "template.containers: exactly one container must specify a port (ingress)."
        )
    for i, container in enumerate(template.containers):
        if not _IMAGE.fullmatch(container.image):
            raise HttpError(
                400,
                f"template.containers[{i}].image: Expected an image path like "
                f"[host/]repo-path[:tag and/or @digest] but obtained '{container.image}'.",
            )


def _validate_traffic(traffic: Sequence[run_v2.TrafficTarget]) -> None:
    tags: set[str] = set()
    for target in traffic:
        if target.type_ == UNSPECIFIED:
            target.type_ = REVISION if target.revision else LATEST
        if target.type_ == REVISION and not target.revision:
            raise HttpError(400, "a TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION target needs a name")
        if target.type_ == LATEST and target.revision:
            raise HttpError(400, "a TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST target has no revision")
        if not 0 <= target.percent <= 100:
            raise HttpError(400, f"traffic percent {target.percent} is out of range")
        if target.tag:
            if target.tag in tags:
                raise HttpError(400, f"traffic tag '{target.tag}' is used twice")
            tags.add(target.tag)
    total = sum(t.percent for t in traffic)
    if total != 100:
        raise HttpError(400, f"Traffic percentages must sum to 100, got {total}.")


def _seed_targets(
    revisions: list[str], traffic: dict[str, int], tags: dict[str, str]
) -> list[run_v2.TrafficTarget]:
    unknown = sorted((set(traffic) | set(tags.values())) - set(revisions))
    if unknown:
        raise ValueError(f"traffic names unknown revision(s) {unknown}")
    if sum(int(p) for p in traffic.values()) != 100:
        raise ValueError("traffic percents must sum to 100")
    targets = {
        rev: run_v2.TrafficTarget(type_=REVISION, revision=rev, percent=int(pct))
        for rev, pct in traffic.items()
        if int(pct) > 0
    }
    extra = []
    for tag, rev in tags.items():
        if rev in targets and not targets[rev].tag:
            targets[rev].tag = tag
        else:
            extra.append(run_v2.TrafficTarget(type_=REVISION, revision=rev, percent=0, tag=tag))
    return [*targets.values(), *extra]
