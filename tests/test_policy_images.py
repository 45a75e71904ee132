"""Pure rules of /deploy (image references, the registry allow-list, warnings) and of who may
approve: plain functions over plain data."""

from __future__ import annotations

import itertools

import pytest
import yaml

from bot.config import Action, Approval, ConfigError, Role, parse_config
from bot.policy.approvals import decide_approval, who_may_approve
from bot.policy.images import (
    ImageRef,
    ImageWarning,
    allowed_registries,
    check_image,
    default_registries,
    in_registries,
    parse_image,
)
from tests.conftest import REPO

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        (
            "us-central1-docker.pkg.dev/proj/repo/app:1.2.3",
            ImageRef("us-central1-docker.pkg.dev", "proj/repo/app", "1.2.3", None),
        ),
        (
            f"us-docker.pkg.dev/proj/repo/app@{DIGEST}",
            ImageRef("us-docker.pkg.dev", "proj/repo/app", None, DIGEST),
        ),
        (
            f"europe-docker.pkg.dev/p/r/a:v1@{DIGEST}",
            ImageRef("europe-docker.pkg.dev", "p/r/a", "v1", DIGEST),
        ),
        ("localhost:5000/app", ImageRef("localhost:5000", "app", None, None)),
        ("nginx", ImageRef("docker.io", "library/nginx", None, None)),
        ("someone/app:latest", ImageRef("docker.io", "someone/app", "latest", None)),
    ],
)
def test_parse_image(reference: str, expected: ImageRef) -> None:
    assert parse_image(reference) == expected


@pytest.mark.parametrize(
    "reference",
    ["", "host/", "/app", "app:", "app@sha256:xyz", "a//b", "app:tag:more", "-app", "app b"],
)
def test_parse_image_refuses_what_is_not_a_reference(reference: str) -> None:
    assert parse_image(reference) is None


def test_default_registries_are_the_services_own_region_and_multi_region() -> None:
    assert default_registries("proj", "us-central1") == (
        "us-central1-docker.pkg.dev/proj/",
        "us-docker.pkg.dev/proj/",
    )
    assert default_registries("proj", "europe-west1")[1] == "europe-docker.pkg.dev/proj/"
    assert default_registries("proj", "me-west1") == ("me-west1-docker.pkg.dev/proj/",)


def test_allowed_registries_the_service_wins_then_global_then_default() -> None:
    assert allowed_registries(("a.io/x/",), ("b.io/",), "p", "us-east1") == ("a.io/x/",)
    assert allowed_registries(None, ("b.io/",), "p", "us-east1") == ("b.io/",)
    assert allowed_registries(None, (), "p", "us-east1") == default_registries("p", "us-east1")
    assert allowed_registries((), ("b.io/",), "p", "us-east1") == (), "an empty list allows none"


@pytest.mark.parametrize(
    ("reference", "allowed"),
    [
        ("us-docker.pkg.dev/proj/apps/wa:1", True),
        ("us-docker.pkg.dev/proj/wa:1", True),
        ("us-docker.pkg.dev/proj-evil/apps/wa:1", False),
        ("us-docker.pkg.dev.evil.io/proj/apps/wa:1", False),
        ("us-docker.pkg.dev/other/proj/wa:1", False),
        ("gcr.io/shared/tools/wa:1", True),
        ("gcr.io/sharedx/wa:1", False),
        ("us-docker.pkg.dev/proj", False),
    ],
)
def test_in_registries_matches_whole_components(reference: str, allowed: bool) -> None:
    image = parse_image(reference)
    assert image is not None
    assert in_registries(image, ("us-docker.pkg.dev/proj/", "gcr.io/shared")) is allowed


@pytest.mark.parametrize(
    ("reference", "serving", "production", "warnings", "confirm"),
    [
        ("r.io/p/a:1.2", "r.io/p/a:1.1", True, (), False),
        ("r.io/p/a:latest", "r.io/p/a:1.1", True, (ImageWarning.LATEST,), True),
        ("r.io/p/a:latest", "r.io/p/a:1.1", False, (ImageWarning.LATEST,), False),
        ("r.io/p/a", "", True, (ImageWarning.UNTAGGED,), True),
        (f"r.io/p/a:latest@{DIGEST}", "", True, (), False),
        (f"r.io/p/a@{DIGEST}", "", True, (), False),
        ("r.io/p/a:1.1", "r.io/p/a:1.1", True, (ImageWarning.ALREADY_SERVING,), False),
        (
            "r.io/p/a:latest",
            "r.io/p/a:latest",
            True,
            (ImageWarning.LATEST, ImageWarning.ALREADY_SERVING),
            True,
        ),
        (
            "nginx",
            "docker.io/library/nginx",  # the same image by its canonical name
            False,
            (ImageWarning.UNTAGGED, ImageWarning.ALREADY_SERVING),
            False,
        ),
    ],
)
def test_check_image(
    reference: str,
    serving: str,
    production: bool,
    warnings: tuple[ImageWarning, ...],
    confirm: bool,
) -> None:
    image = parse_image(reference)
    assert image is not None
    check = check_image(image, serving, production)
    assert check.warnings == warnings
    assert check.needs_confirmation is confirm


# -- registries in app.yaml -------------------------------------------------------------------


def sample(**changes: object) -> dict:
    data = yaml.safe_load((REPO / "app.yaml").read_text())
    for path, value in changes.items():
        node = data
        *parents, leaf = path.split(".")
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[leaf] = value
    return data


def test_registries_in_app_yaml_are_normalised() -> None:
    config = parse_config(
        yaml.dump(
            sample(**{"release.registries": ["gcr.io/x"], "services.0.registries": ["a.io/"]})
        )
    )
    assert config.release.registries == ("gcr.io/x/",)
    assert config.services[0].registries == ("a.io/",)
    assert config.services[1].registries is None


@pytest.mark.parametrize("bad", ["Us-Docker.pkg.dev/p", "https://gcr.io/p", "gcr.io//p", " "])
def test_a_bad_registry_prefix_is_refused_with_its_path(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"release\.registries: .*not a registry prefix"):
        parse_config(yaml.dump(sample(**{"release.registries": [bad]})))


# -- who may approve, said in advance, agrees with who may approve -----------------------------


@pytest.mark.parametrize(("requester", "approval"), itertools.product(Role, Approval))
def test_who_may_approve_agrees_with_decide_approval(requester: Role, approval: Approval) -> None:
    config = parse_config((REPO / "app.yaml").read_text())
    row = config.approvals.full_traffic.model_copy(
        update={"requester": requester, "approval": approval}
    )
    matrix = config.approvals.model_copy(update={"full_traffic": row})
    rule = who_may_approve(matrix, Action.FULL_TRAFFIC)
    for held in [frozenset({r}) for r in Role] + [frozenset(Role)]:
        for approver in ("U0REQ", "U0OTHER"):
            allowed = decide_approval(matrix, Action.FULL_TRAFFIC, approver, held, "U0REQ").allowed
            said = rule.role in held and not (rule.not_the_requester and approver == "U0REQ")
            assert allowed is said, (held, approver)
