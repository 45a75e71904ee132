"""The second word of ``/rollback SERVICE WORD ...``: a revision, or the start of the reason. Pure.

Cloud Run names a revision ``SERVICE-NNNNN-xyz`` (a five-digit generation and a random suffix)
unless the deployer chose a name, which must start with the service's name and a dash
(knative/client#282: "Must start with the service name and a dash as a prefix"; the emulator
enforces the same). A word that looks like a revision but is not exactly one is bad input, never
a reason: a typo must not roll back to some other revision with the typo as the reason.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

SIMILAR = 0.8  # difflib ratio from which a word reads as a mistyped revision name
SUGGEST = 0.7  # ... and from which a revision is worth offering as "did you mean"
MAX_SUGGESTIONS = 3
TIE = 0.02  # suggestions this close to the best one are offered too

_DIGITS = re.compile(r"[0-9]+")
_ENDS_IN_NUMBER = re.compile(r"-[0-9]+\Z")


class WordKind(StrEnum):
    REASON = "reason"  # not a revision: the reason starts with this word
    REVISION = "revision"  # exactly a revision of the service (or its short form)
    UNKNOWN = "unknown_revision"  # looks like a revision, but is none of this service's
    AMBIGUOUS = "ambiguous_revision"  # a short form that fits several revisions
    OTHER_SERVICE = "other_service"  # a revision name of another managed service


@dataclass(frozen=True)
class WordReading:
    kind: WordKind
    revision: str = ""  # the exact revision, for REVISION
    owner: str = ""  # the service the word's name belongs to, for OTHER_SERVICE
    suggestions: tuple[str, ...] = ()  # the closest real revisions, best first


def read_revision_word(
    word: str, service: str, revisions: Sequence[str], managed: Sequence[str]
) -> WordReading:
    """How to read ``word`` given the service's real ``revisions`` (newest first) and the names
    of every ``managed`` service."""
    if word in revisions:
        return WordReading(WordKind.REVISION, revision=word)
    if _DIGITS.fullmatch(word):
        return _short_form(word, service, revisions)
    owner = _other_owner(word, service, managed)
    if owner:
        return WordReading(WordKind.OTHER_SERVICE, owner=owner)
    if looks_like_revision(word, service, revisions):
        return WordReading(WordKind.UNKNOWN, suggestions=closest_revisions(word, revisions))
    return WordReading(WordKind.REASON)


def looks_like_revision(word: str, service: str, revisions: Sequence[str]) -> bool:
    """Starts with the service's name and a dash, ends in a dash and digits, is only digits, or
    differs from a real revision only by case or a typo."""
    folded = word.casefold()
    return (
        folded.startswith(service.casefold() + "-")
        or bool(_ENDS_IN_NUMBER.search(word))
        or bool(_DIGITS.fullmatch(word))
        or bool(_close(folded, revisions, SIMILAR, 1))
    )


def closest_revisions(word: str, revisions: Sequence[str]) -> tuple[str, ...]:
    """The real revisions nearest to ``word`` (difflib's ratio, case-insensitive): the best one
    and any as close as it (so ``wa-backnd-00001`` suggests ``wa-backend-00001`` alone)."""
    folded = word.casefold()
    close = _close(folded, revisions, SUGGEST, MAX_SUGGESTIONS)
    ratios = [difflib.SequenceMatcher(None, folded, c.casefold()).ratio() for c in close]
    return tuple(c for c, ratio in zip(close, ratios, strict=True) if ratio >= ratios[0] - TIE)


def _short_form(digits: str, service: str, revisions: Sequence[str]) -> WordReading:
    """``00001`` means ``SERVICE-00001`` (or ``SERVICE-00001-xyz``) when exactly one exists."""
    name = f"{service}-{digits}"
    fits = [r for r in revisions if r == name or r.startswith(name + "-")]
    if len(fits) == 1:
        return WordReading(WordKind.REVISION, revision=fits[0])
    if fits:
        return WordReading(WordKind.AMBIGUOUS, suggestions=tuple(fits[:MAX_SUGGESTIONS]))
    return WordReading(WordKind.UNKNOWN, suggestions=closest_revisions(name, revisions))


def _other_owner(word: str, service: str, managed: Sequence[str]) -> str:
    """The other managed service whose name, with a dash, starts ``word`` (the longest such
    name, so ``wa-backend-staging-00001`` belongs to ``wa-backend-staging``)."""
    folded = word.casefold()
    owners = [m for m in managed if folded.startswith(m.casefold() + "-")]
    owner = max(owners, key=len, default="")
    return owner if owner and owner != service else ""


def _close(folded: str, revisions: Sequence[str], cutoff: float, n: int) -> list[str]:
    by_folded = {r.casefold(): r for r in revisions}
    matches = difflib.get_close_matches(folded, list(by_folded), n=n, cutoff=cutoff)
    return [by_folded[m] for m in matches]
