"""What `/deploy` may release: container image references, the registry allow-list, and the
warnings a person must see (or confirm) before a release starts. Pure functions, no I/O.

Artifact Registry names images ``LOCATION-docker.pkg.dev/PROJECT-ID/REPOSITORY/IMAGE`` with an
optional ``:TAG`` or ``@IMAGE-DIGEST``, where LOCATION is a region or a multi-region
(https://cloud.google.com/artifact-registry/docs/docker/names).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

DOCKER_HUB = "docker.io"
LATEST = "latest"
# Artifact Registry's multi-regions, and the regions each one covers by name prefix.
MULTI_REGIONS = ("us", "europe", "asia")

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_HOST = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::[0-9]+)?"
_TAG = r"[a-z0-9_][a-z0-9_.-]{0,127}"
_DIGEST = r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-f0-9]{32,}"
_REFERENCE = (
    rf"(?:(?P<host>{_HOST})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?"
)  # compiled at the first /deploy (re caches it), not at import: the first ack doesn't pay


@dataclass(frozen=True)
class ImageRef:
    host: str
    path: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        """``host/path``, without tag or digest."""
        return f"{self.host}/{self.path}"

    @property
    def canonical(self) -> str:
        return (
            self.name
            + (f":{self.tag}" if self.tag else "")
            + (f"@{self.digest}" if self.digest else "")
        )


def parse_image(reference: str) -> ImageRef | None:
    """A container image reference split into its parts; None when it is not one. The first
    component is a registry host only when it looks like one (a dot, a port or ``localhost``),
    as Docker reads it; otherwise the image is on Docker Hub."""
    match = re.fullmatch(_REFERENCE, reference)
    if match is None:
        return None
    host, path = match.group("host"), match.group("path")
    if host is not None and not ("." in host or ":" in host or host == "localhost"):
        host, path = DOCKER_HUB, f"{host}/{path}"
    if host is None:
        host = DOCKER_HUB
    if host == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    return ImageRef(host, path, match.group("tag"), match.group("digest"))


def default_registries(project: str, region: str) -> tuple[str, ...]:
    """The service's own Artifact Registry: its region's host and the multi-region that
    contains that region (``us-central1`` -> ``us``), both in the service's project."""
    hosts = [f"{region}-docker.pkg.dev"]
    multi = region.split("-", 1)[0]
    if multi in MULTI_REGIONS:
        hosts.append(f"{multi}-docker.pkg.dev")
    return tuple(f"{host}/{project}/" for host in hosts)


def allowed_registries(
    service_registries: Sequence[str] | None,
    global_registries: Sequence[str],
    project: str,
    region: str,
) -> tuple[str, ...]:
    """The service's own list if it has one, else the global list, else its own registry."""
    if service_registries is not None:
        return tuple(service_registries)
    if global_registries:
        return tuple(global_registries)
    return default_registries(project, region)


def in_registries(image: ImageRef, registries: Sequence[str]) -> bool:
    """Is the image under one of the prefixes (``host/`` or ``host/path/``)? Whole components
    only: ``…/proj/`` admits ``…/proj/repo/app`` but neither ``…/proj-evil/…`` nor ``…/proj``."""
    return any(image.name.startswith(prefix.rstrip("/") + "/") for prefix in registries)


class ImageWarning(StrEnum):
    LATEST = "latest"  # the moving tag: what runs may not be what was reviewed
    UNTAGGED = "untagged"  # no tag and no digest: Docker and Cloud Run take :latest
    ALREADY_SERVING = "already_serving"  # the same image as blue: nothing would change


NEEDS_CONFIRMATION = frozenset({ImageWarning.LATEST, ImageWarning.UNTAGGED})


@dataclass(frozen=True)
class DeployCheck:
    warnings: tuple[ImageWarning, ...]
    needs_confirmation: bool


def check_image(image: ImageRef, serving_image: str, production: bool) -> DeployCheck:
    """The warnings of releasing ``image`` over ``serving_image`` (blue's). A moving reference
    (``:latest`` or none) in production needs the requester's explicit confirmation: the image
    that runs may differ from the one reviewed. An image already serving is only shown."""
    warnings = []
    if image.digest is None and image.tag == LATEST:
        warnings.append(ImageWarning.LATEST)
    if image.digest is None and image.tag is None:
        warnings.append(ImageWarning.UNTAGGED)
    serving = parse_image(serving_image) if serving_image else None
    if serving is not None and serving.canonical == image.canonical:
        warnings.append(ImageWarning.ALREADY_SERVING)
    confirm = production and any(w in NEEDS_CONFIRMATION for w in warnings)
    return DeployCheck(tuple(warnings), confirm)
