"""Feature flags as the runbook keeps them: ``FEATURE_FLAG_<NAME>`` environment variables of a
Cloud Run revision's ingress container, read by the service and reported by its own
``GET /config/flags``. Pure: names, values, who may flip one, and where the two sources disagree.

The service's answer is ``{"flags": {"NEW_CHECKOUT": true, ...}}``: flag names without the
``FEATURE_FLAG_`` prefix, JSON booleans (see ``parse_answer``). Runback writes ``true`` or
``false`` into the variable; reading it, ``true/1/on/yes`` and ``false/0/off/no/""`` are
understood (any case), anything else is unreadable rather than guessed.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bot.config import Action, Approvals, Role
from bot.policy.approvals import Decision, decide_request
from bot.ports import EnvVar

PREFIX = "FEATURE_FLAG_"
NAME_CHARS = re.compile(r"[A-Z0-9_]+")
MAX_NAME = 100  # Cloud Run takes longer names; nobody types one
TRUE_WORDS = frozenset({"true", "1", "on", "yes"})
FALSE_WORDS = frozenset({"false", "0", "off", "no", ""})
SWITCHES = {"on": True, "off": False}


class NameProblem(StrEnum):
    EMPTY = "empty"
    CHARACTERS = "characters"  # outside [A-Z0-9_]
    TOO_LONG = "too_long"


@dataclass(frozen=True)
class FlagName:
    """A flag, by its short name (``NEW_CHECKOUT``); ``env`` is its variable's name."""

    name: str

    @property
    def env(self) -> str:
        return PREFIX + self.name


def parse_flag_name(word: str) -> FlagName | NameProblem:
    """``NEW_CHECKOUT`` or ``FEATURE_FLAG_NEW_CHECKOUT`` -> FlagName("NEW_CHECKOUT")."""
    name = word[len(PREFIX) :] if word.startswith(PREFIX) else word
    if not name:
        return NameProblem.EMPTY
    if not NAME_CHARS.fullmatch(name):
        return NameProblem.CHARACTERS
    if len(name) > MAX_NAME:
        return NameProblem.TOO_LONG
    return FlagName(name)


def suggested_name(word: str) -> str:
    """What the user probably meant by a refused name (``new-checkout`` -> ``NEW_CHECKOUT``);
    "" when nothing sensible comes out."""
    guess = re.sub(r"[^A-Z0-9_]", "_", word.upper()).strip("_")
    guess = guess[len(PREFIX) :] if guess.startswith(PREFIX) else guess
    return guess if guess and len(guess) <= MAX_NAME and guess != word else ""


def parse_switch(word: str) -> bool | None:
    """``on`` -> True, ``off`` -> False (any case), anything else None."""
    return SWITCHES.get(word.lower())


def env_text(value: bool) -> str:
    """What Runback writes into the variable (what `gcloud --set-env-vars ...=true` writes)."""
    return "true" if value else "false"


def env_value(text: str) -> bool | None:
    """A variable's text as a flag value; None when it says neither on nor off."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    return None


@dataclass(frozen=True)
class EnvFlag:
    name: str  # short name
    text: str  # the variable's value as set ("" when read from a secret)
    value: bool | None  # None: unreadable text, or a Secret Manager reference
    from_secret: bool = False


def flags_in_env(env: Iterable[EnvVar]) -> dict[str, EnvFlag]:
    """Every ``FEATURE_FLAG_*`` variable of a container, by short name (the last one wins, as
    in a container's environment)."""
    found: dict[str, EnvFlag] = {}
    for var in env:
        if not var.name.startswith(PREFIX) or len(var.name) == len(PREFIX):
            continue
        name = var.name[len(PREFIX) :]
        if var.from_secret:
            found[name] = EnvFlag(name, "", None, from_secret=True)
        else:
            found[name] = EnvFlag(name, var.value, env_value(var.value))
    return found


def parse_answer(body: Any) -> dict[str, bool] | None:
    """The service's ``GET /config/flags`` JSON: ``{"flags": {NAME: bool}}``. Names may carry
    the prefix; other top-level keys are ignored. None when the shape is anything else."""
    if not isinstance(body, dict) or not isinstance(body.get("flags"), dict):
        return None
    flags: dict[str, bool] = {}
    for key, value in body["flags"].items():
        parsed = parse_flag_name(str(key))
        if not isinstance(value, bool) or not isinstance(parsed, FlagName):
            return None
        flags[parsed.name] = value
    return flags


class Agreement(StrEnum):
    MATCH = "match"
    MISMATCH = "mismatch"
    NOT_IN_ANSWER = "not_in_answer"  # set in the environment, the service does not report it
    ONLY_IN_ANSWER = "only_in_answer"  # reported by the service, not in the environment
    UNKNOWN = "unknown"  # the answer could not be read, or the variable's value is unreadable


@dataclass(frozen=True)
class FlagRow:
    name: str
    env: EnvFlag | None
    answered: bool | None
    agreement: Agreement


def compare(env: Mapping[str, EnvFlag], answer: Mapping[str, bool] | None) -> list[FlagRow]:
    """One row per flag, by name: the environment beside the service's own answer."""
    rows = []
    for name in sorted(set(env) | set(answer or {})):
        var = env.get(name)
        said = answer.get(name) if answer is not None else None
        rows.append(FlagRow(name, var, said, _agreement(var, answer, name)))
    return rows


def _agreement(var: EnvFlag | None, answer: Mapping[str, bool] | None, name: str) -> Agreement:
    if answer is None:
        return Agreement.UNKNOWN
    if var is None:
        return Agreement.ONLY_IN_ANSWER
    if name not in answer:
        return Agreement.NOT_IN_ANSWER
    if var.value is None:
        return Agreement.UNKNOWN
    return Agreement.MATCH if var.value == answer[name] else Agreement.MISMATCH


def flag_action(environment: str) -> Action:
    return Action.FEATURE_FLAG if environment == "production" else Action.FEATURE_FLAG_STAGING


def decide_flip(
    matrix: Approvals, environment: str, held: Set[Role], in_incidents_channel: bool
) -> Decision:
    """May someone holding ``held`` flip a flag of a service in ``environment``?"""
    return decide_request(matrix, flag_action(environment), held, in_incidents_channel)


class FlipProblem(StrEnum):
    FROM_SECRET = "from_secret"  # the variable is a Secret Manager reference: not ours
    ALREADY = "already"  # the serving revision already has that value
    NEW_NAME = "new_name"  # the serving revision has no such variable: a typo, unless confirmed


def flip_problem(
    current: EnvFlag | None, value: bool, confirmed_new: bool = False
) -> FlipProblem | None:
    """Why flipping to ``value`` makes no sense on a revision whose variable is ``current``. A
    variable the revision does not have is only set when the person confirmed it as new: a
    typo must not create a variable and move all the traffic to a revision that has it."""
    if current is None:
        return None if confirmed_new else FlipProblem.NEW_NAME
    if current.from_secret:
        return FlipProblem.FROM_SECRET
    if current.value is value:
        return FlipProblem.ALREADY
    return None


def similar_flags(name: str, known: Iterable[str]) -> list[str]:
    """The flags of ``known`` that ``name`` is probably a typo of, closest first."""
    return difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.75)
