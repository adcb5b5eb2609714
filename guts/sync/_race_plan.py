"""Which peers a race asks, and when: the pure part of
:mod:`guts.sync.race`.

Theory of operation
-------------------
The candidates are kept in order of preference, at most ``limit`` of
them. Each is in one of four states:

========  ==========================================================
IDLE      not asked yet, or asked and outrun by another (not at fault)
ASKING    its ``GetRefs`` is in flight
SERVING   its answer verified first: the objects come from it
FAILED    its answer did not verify, or it failed while serving
========  ==========================================================

:meth:`RacePlan.to_ask` moves the first idle candidates to ASKING until
``width`` are in flight (none while one serves). :meth:`RacePlan.answered`
makes one the server and sends the others in flight back to IDLE: they
lost a race, they did nothing wrong, and a later round may ask them again.
:meth:`RacePlan.failed` puts one out for good. Every round ends with a
failure or a success, and each failure puts one candidate out, so a race
makes at most ``limit`` rounds; the plan is exhausted when no candidate
is asking, serving or idle.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

__all__ = ["CandidateState", "RacePlan"]

T = TypeVar("T", bound=Hashable)


class CandidateState(enum.Enum):
    """Where one candidate of a race is (module docstring)."""

    IDLE = "idle"
    ASKING = "asking"
    SERVING = "serving"
    FAILED = "failed"


class RacePlan(Generic[T]):
    """The candidates of one fetch and their states (module docstring).

    Args:
        candidates: in order of preference; repeats are dropped.
        width: candidates asked at once.
        limit: candidates considered in all (the first ones).
    """

    def __init__(self, candidates: Iterable[T], *, width: int, limit: int) -> None:
        if width < 1 or limit < 1:
            raise ValueError(f"a race needs a width and a limit of at least 1, not {width} and {limit}")
        self.width = width
        self.candidates: tuple[T, ...] = tuple(dict.fromkeys(candidates))[:limit]
        self._states = dict.fromkeys(self.candidates, CandidateState.IDLE)
        #: Each candidate asked so far, once, in the order first asked.
        self.asked: list[T] = []

    def state(self, candidate: T) -> CandidateState:
        return self._states[candidate]

    def _in(self, state: CandidateState) -> list[T]:
        return [c for c in self.candidates if self._states[c] is state]

    @property
    def asking(self) -> list[T]:
        """The candidates whose ``GetRefs`` is in flight."""
        return self._in(CandidateState.ASKING)

    @property
    def exhausted(self) -> bool:
        """No candidate is left to ask, in flight or serving."""
        return all(state is CandidateState.FAILED for state in self._states.values())

    def to_ask(self) -> list[T]:
        """The candidates to ask now (marked ASKING): the first idle ones,
        up to ``width`` in flight; none while one serves."""
        if self._in(CandidateState.SERVING):
            return []
        room = self.width - len(self.asking)
        chosen = self._in(CandidateState.IDLE)[: max(room, 0)]
        for candidate in chosen:
            self._states[candidate] = CandidateState.ASKING
            if candidate not in self.asked:
                self.asked.append(candidate)
        return chosen

    def answered(self, candidate: T) -> list[T]:
        """``candidate``'s answer verified first: it serves. Returns the
        others that were in flight, IDLE again (to be cancelled).

        Raises:
            ValueError: ``candidate`` was not asking.
        """
        if self._states.get(candidate) is not CandidateState.ASKING:
            raise ValueError(f"{candidate} answered but was not asked")
        losers = [c for c in self.asking if c != candidate]
        for loser in losers:
            self._states[loser] = CandidateState.IDLE
        self._states[candidate] = CandidateState.SERVING
        return losers

    def failed(self, candidate: T) -> None:
        """``candidate`` failed, asking or serving: it is out for good.

        Raises:
            ValueError: ``candidate`` is no candidate of this plan.
        """
        if candidate not in self._states:
            raise ValueError(f"{candidate} is no candidate of this race")
        self._states[candidate] = CandidateState.FAILED
