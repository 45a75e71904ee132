"""Which lane a test runs in, read from the code it runs, so no test is marked by hand.

- ``browser``: drives headless Chromium (the sandbox page's tests).
- ``process``: starts processes: ``python -m bot serve``, the sandbox CLI, pip, git, bash…
  (it, a fixture it uses or a helper of the tests package they call names ``subprocess``,
  ``Popen`` or ``BotProcess``).
- ``flow``: the real bot in this process, on the emulators (the ``sandbox`` and ``pg_sandbox``
  fixtures, or a ``Sandbox`` built by the test, its fixtures or their helpers).
- none: everything else (the fast lane).

The first that applies wins, in that order. tests/conftest.py adds the marker at collection.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from pathlib import Path
from types import CodeType, FunctionType
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
BROWSER_FILES = frozenset({TESTS / "test_sandbox_browser.py"})
PROCESS_NAMES = frozenset({"subprocess", "Popen", "BotProcess"})
FLOW_NAMES = frozenset({"Sandbox", "run_console", "bench_release_judgement"})  # each builds one
FLOW_FIXTURES = frozenset({"sandbox", "pg_sandbox"})


def lane_of(item: pytest.Item) -> str | None:
    function = getattr(item, "function", None)
    if function is None:
        return None
    if Path(inspect.getfile(function)) in BROWSER_FILES:
        return "browser"
    fixtures = set(getattr(item, "fixturenames", ()))
    runs = [function, *_fixture_functions(item, fixtures)]
    # fixtures picked by name as the test runs: request.getfixturevalue("sandbox")
    picked = {s for f in runs for s in _picked(f)} - fixtures
    runs += _fixture_functions(item, picked)
    if any(_reaches_from(f, PROCESS_NAMES) for f in runs):
        return "process"
    if (fixtures | picked) & FLOW_FIXTURES or any(_reaches_from(f, FLOW_NAMES) for f in runs):
        return "flow"
    return None


def _fixture_functions(item: pytest.Item, names: Iterable[str]) -> list[Callable[..., Any]]:
    manager = item.session._fixturemanager
    found: list[Callable[..., Any]] = []
    for name in names:
        found += [d.func for d in manager.getfixturedefs(name, item) or ()]
    return found


def _picked(function: Callable[..., Any]) -> set[str]:
    code = getattr(inspect.unwrap(function), "__code__", None)
    if code is None or "getfixturevalue" not in set(_names(code)):
        return set()
    return set(_strings(code))


_reached: dict[tuple[int, frozenset[str]], bool] = {}


def _reaches_from(target: Any, names: frozenset[str]) -> bool:
    key = (id(target), names)
    if key not in _reached:
        _reached[key] = _reaches(target, names, set())
    return _reached[key]


def _reaches(target: Any, names: frozenset[str], seen: set[int]) -> bool:
    """Whether ``target`` (a function or class) names one of ``names``, itself or through the
    functions and classes of the tests package it calls."""
    target = inspect.unwrap(target)
    if id(target) in seen:
        return False
    seen.add(id(target))
    if isinstance(target, type):
        if any(base.__name__ in names for base in target.__mro__):
            return True
        members = [m for m in vars(target).values() if isinstance(m, FunctionType | property)]
        return any(_reaches(getattr(m, "fget", m), names, seen) for m in members)
    code = getattr(target, "__code__", None)
    if code is None:
        return False
    used = set(_names(code))
    if used & names:
        return True
    scope = getattr(target, "__globals__", {})
    return any(_reaches(scope[n], names, seen) for n in used if _ours(scope.get(n)))


def _ours(value: Any) -> bool:
    """A function or class defined under tests/ (the code under test is not followed)."""
    if not (isinstance(value, type) or inspect.isfunction(value)):
        return False
    try:
        return _under_tests(inspect.getfile(value))
    except (TypeError, OSError):  # built-in
        return False


@functools.cache
def _under_tests(filename: str) -> bool:
    return Path(filename).resolve().is_relative_to(TESTS)


def _names(code: CodeType) -> Iterable[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _names(const)


def _strings(code: CodeType) -> Iterable[str]:
    for const in code.co_consts:
        if isinstance(const, str):
            yield const
        elif isinstance(const, CodeType):
            yield from _strings(const)
