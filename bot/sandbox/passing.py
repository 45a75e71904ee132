"""Sandbox time that passes like time: the console's `wait`.

Jumping the clock by nine minutes and ticking once would run one judgement where real time runs
nine, and teach the wrong lesson (a release observed with `wait 9m` not rolled back where nine
`wait 1m` roll it back). So the clock stops at every step that falls due on the way, in order
(judgements, observations, approval expiries, the drill schedule: the engine's ``next_due``),
the step runs at its own due time, and only then does time go on.
"""

from __future__ import annotations

from bot.clock import SandboxClock
from bot.ops.engine import Engine

MAX_STEPS = 5000  # due steps one `wait` runs at their own times (a day of 30 s checks)


def pass_time(clock: SandboxClock, engine: Engine, seconds: float, settle_s: float = 0.05) -> None:
    """Move ``clock`` on by ``seconds``, running every step that falls due at its own time. The
    clock is held meanwhile, so that each step runs at exactly its due time and schedules the
    next from there, however long the step takes in real time. Each step ends once the engine
    has been idle for ``settle_s`` (real time)."""
    with clock.held():
        target = clock.time() + max(seconds, 0.0)
        engine.tick()  # what is due already runs first
        stepped = clock.now()
        for _ in range(MAX_STEPS):
            engine.wait_idle(timeout_s=60, settle_s=settle_s)
            # steps due by now had their tick; one that stays due (a lease held elsewhere)
            # gets the next one
            due = engine.next_due(after=max(stepped, clock.now()))
            if due is None or due.timestamp() > target:
                break
            clock.advance(max(due.timestamp() - clock.time(), 0.0))
            stepped = due
            engine.tick()
        clock.advance(max(target - clock.time(), 0.0))
        engine.tick()
        engine.wait_idle(timeout_s=60, settle_s=settle_s)
