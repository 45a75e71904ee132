"""What the Cloud Run emulator keeps of a revision's template, beside ``cloudrun.py``.

A revision is an immutable snapshot of the template it was created from: its service account,
scaling, VPC access, volumes, timeout, concurrency, execution environment, labels and
containers (https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.services.revisions).
Seeded revisions may carry settings of their own (``template`` and ``resources`` in a seed
spec), so that a test can tell which revision a new one was built from.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import uuid
from typing import Any

from google.cloud import run_v2
from google.protobuf import json_format

from bot.sandbox.emulator.http import HttpError, Request, Response, json_response

# The fields a RevisionTemplate and a Revision share: what a revision keeps of its template.
TEMPLATE_FIELDS = tuple(
    sorted(
        (set(run_v2.RevisionTemplate.meta.fields) & set(run_v2.Revision.meta.fields))
        - {"labels", "annotations"}
    )
)
# Cloud Run's own label and annotation namespaces: read-only on a revision, refused in a v2
# template ("Cloud Run API v2 does not support labels with `run.googleapis.com`,
# `cloud.googleapis.com`, `serving.knative.dev`, or `autoscaling.knative.dev` namespaces, and
# they will be rejected": RevisionTemplate.labels, Cloud Run Admin API v2 reference).
SYSTEM_NAMESPACES = (
    "run.googleapis.com",
    "cloud.googleapis.com",
    "serving.knative.dev",
    "autoscaling.knative.dev",
)


def revision_settings(template: run_v2.RevisionTemplate, service: str) -> dict[str, Any]:
    """The Revision fields a new revision takes from ``template`` (``service``: full name)."""
    present = {field.name for field, _ in run_v2.RevisionTemplate.pb(template).ListFields()}
    settings: dict[str, Any] = {
        name: getattr(template, name) for name in TEMPLATE_FIELDS if name in present
    }
    settings["containers"] = [run_v2.Container(c) for c in template.containers]
    settings["volumes"] = [run_v2.Volume(v) for v in template.volumes]
    settings["labels"] = {
        **dict(template.labels),
        "cloud.googleapis.com/location": service.split("/")[3],
        "serving.knative.dev/service": service.rsplit("/", 1)[-1],
    }
    settings["annotations"] = dict(template.annotations)
    return settings


def seed_template(
    containers: list[run_v2.Container], spec: dict[str, Any]
) -> run_v2.RevisionTemplate:
    """A seeded revision's template: its containers, plus ``spec["template"]`` (RevisionTemplate
    fields in the API's JSON, e.g. ``{"serviceAccount": ..., "scaling": {...}}``) and
    ``spec["resources"]`` (the ingress container's ResourceRequirements, e.g.
    ``{"cpuIdle": true}``)."""
    extra = dict(spec.get("template") or {})
    try:
        template = run_v2.RevisionTemplate.from_json(json.dumps(extra))
    except json_format.ParseError as error:
        raise ValueError(f"template: {error}") from error
    resources = spec.get("resources")
    if resources is not None:
        ingress = ingress_index(containers)
        try:
            containers[ingress].resources = run_v2.ResourceRequirements.from_json(
                json.dumps(resources)
            )
        except json_format.ParseError as error:
            raise ValueError(f"resources: {error}") from error
    template.containers = containers
    return template


def ingress_index(containers: Any) -> int:
    """The ingress container: the only one, or the one with a port (else the last)."""
    if len(containers) == 1:
        return 0
    with_port = [i for i, c in enumerate(containers) if c.ports]
    return with_port[0] if with_port else len(containers) - 1


def check_template_metadata(template: run_v2.RevisionTemplate) -> None:
    """Cloud Run refuses system labels and annotations in a v2 template (see SYSTEM_NAMESPACES)."""
    for kind, keys in (("labels", template.labels), ("annotations", template.annotations)):
        for key in keys:
            namespace = key.split("/", 1)[0] if "/" in key else ""
            if namespace in SYSTEM_NAMESPACES:
                raise HttpError(
                    400,
                    f"template.{kind}: Cloud Run API v2 does not support {kind} with "
                    f"`{namespace}` namespace: '{key}'.",
                )


# -- images: tags resolve to digests when a revision is created --------------------------------


class ImageRegistry:
    """Artifact Registry as far as Cloud Run sees it: a tag names a digest, until it is moved.

    Cloud Run resolves each container's image to a digest when it creates a revision and keeps
    it (``containerStatuses[].imageDigest``: "the resolved digest for the image specified and
    resolved during the creation of Revision ... regardless of whether a tag or digest was
    originally specified"), so a revision keeps running the same code after its tag moves.
    A tag seen for the first time gets a digest of its own."""

    def __init__(self) -> None:
        self._tags: dict[str, str] = {}  # "repo:tag" -> "sha256:..."

    def resolve(self, image: str) -> str:
        """``repo@sha256:...`` for ``image`` (a tag, or already a digest)."""
        repository, tag, digest = split_image(image)
        if digest:
            return f"{repository}@{digest}"
        key = f"{repository}:{tag}"
        if key not in self._tags:
            self._tags[key] = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
        return f"{repository}@{self._tags[key]}"

    def move(self, image: str, digest: str = "") -> str:
        """Point tag ``image`` (``repo:tag``) at ``digest`` (default: a new one, as a push
        does); returns the resolved ``repo@sha256:...``."""
        repository, tag, pinned = split_image(image)
        if pinned:
            raise ValueError("move a tag (repo:tag), not a digest")
        if digest and not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            raise ValueError("digest must look like sha256:<64 hex digits>")
        fresh = "sha256:" + hashlib.sha256(f"{image}:{uuid.uuid4()}".encode()).hexdigest()
        self._tags[f"{repository}:{tag}"] = digest or fresh
        return self.resolve(image)


class ImagesMixin:
    """CloudRunEmulator's registry: move a tag (Python and control API)."""

    _lock: threading.RLock
    images: ImageRegistry

    def move_tag(self, image: str, digest: str = "") -> str:
        """Push ``image`` (``repo:tag``) again: the tag names ``digest`` (default a new one)
        from now on; revisions made before keep theirs. Returns ``repo@sha256:...``."""
        with self._lock:
            return self.images.move(image, digest)

    def _control_images(self, request: Request) -> Response:
        """``{"image": "repo:tag", "digest": "sha256:..."}`` (digest optional): move a tag."""
        try:
            body = request.json()
        except ValueError as error:
            raise HttpError(400, "body is not JSON") from error
        if not isinstance(body, dict):
            raise HttpError(400, "body must be a JSON object")
        try:
            resolved = self.move_tag(str(body["image"]), str(body.get("digest") or ""))
        except KeyError as error:
            raise HttpError(400, "missing field 'image'") from error
        except ValueError as error:
            raise HttpError(400, str(error)) from error
        return json_response({"image": body["image"], "resolved": resolved})


def split_image(image: str) -> tuple[str, str, str]:
    """``(repository, tag, digest)`` of ``[host/]path[:tag][@digest]`` (tag ``latest`` when
    there is neither)."""
    name, _, digest = image.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :], digest
    return name, "" if digest else "latest", digest


def container_statuses(containers: Any, registry: ImageRegistry) -> list[dict[str, str]]:
    """A new revision's ``containerStatuses``: each container's name and resolved digest."""
    return [{"name": c.name, "imageDigest": registry.resolve(c.image)} for c in containers]


def with_container_statuses(body: bytes, statuses: dict[str, list[dict[str, str]]]) -> bytes:
    """A Revision (or ListRevisionsResponse) JSON with ``containerStatuses`` added: a field of
    the v2 REST Revision that this version of the run_v2 library does not model (its REST
    transport drops fields it does not know, so Runback reads it from the JSON itself)."""
    data = json.loads(body)
    for revision in data.get("revisions", [data]):
        found = statuses.get(revision.get("name", ""))
        if found:
            revision["containerStatuses"] = found
    return json.dumps(data).encode()


# -- name limits --------------------------------------------------------------------------------

# Cloud Run's answers (400 INVALID_ARGUMENT), as its users met them: a revision name
# (pipe-cd/pipecd#5688) and a tag too long for its URL (firebase/firebase-tools#6137).
REVISION_NAME_ERROR = (
    "template.revision: only lowercase, digits, and hyphens; must begin with letter, and may "
    "not end with hyphen; must be less than 64 characters."
)
TAG_TOO_LONG = (
    "spec.traffic.tag: traffic tag '{tag}' and service name '{service}' together are too long. "
    "Combined traffic tag and service name cannot exceed 46 characters."
)
_DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")


def check_revision_name(name: str) -> None:
    if not _DNS_LABEL.fullmatch(name):
        raise HttpError(400, REVISION_NAME_ERROR)


def check_tag_lengths(service: str, traffic: Any) -> None:
    """A tag's URL is ``TAG---SERVICE-…``: tag and service name fit 46 characters together."""
    for target in traffic:
        if target.tag and len(target.tag) + len(service) > 46:
            raise HttpError(400, TAG_TOO_LONG.format(tag=target.tag, service=service))
