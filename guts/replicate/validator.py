"""The gossip topic validator of announcements: the thin adapter between
:class:`~guts.gossip.Gossipsub` and :func:`guts.replicate.announce.assess`.

Registered on the network-wide topic and on each seeded repository's topic::

    validator = AnnouncementValidator(held, on_accept=coalesce)
    gossip.set_validator(REPOSITORIES_TOPIC, validator)
    gossip.set_validator(refs_topic(rid), validator)

every announcement is decoded and checked before gossip delivers or
forwards it: forged, unsigned, oversized, misdirected or equivocating ones
are rejected (gossipsub charges the peer that sent it, P4); stale or equal
statements, and repositories already held, are ignored (relays lag: no
offence); news is accepted and handed to ``on_accept``, which may still
answer that the node knew it already (a fetch of it is pending): that
one is ignored too, so each node passes each statement on once, however
many peers announce that they hold it.

What the node holds stays behind two callables, so the node can wire its
repositories in without this module knowing them. Both are called on the
Trio thread for every message and must answer from memory, at once.

Each offending peer gets one log line per reason at most once per
``log_interval`` seconds (:class:`~guts.sync.protocol.BadInputLog`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from guts.gossip import GossipMessage, ValidationResult
from guts.replicate.announce import (
    AnnounceLimits,
    Assessment,
    HeldStatement,
    Outcome,
    Verified,
    VerifiedRepository,
    assess,
)
from guts.repo.rid import Rid
from guts.sync.protocol import BadInputLog

__all__ = ["AnnouncementValidator", "announcement_validator"]

log = logging.getLogger("guts.replicate")

_RESULTS = {
    Outcome.ACCEPT: ValidationResult.ACCEPT,
    Outcome.IGNORE: ValidationResult.IGNORE,
    Outcome.REJECT: ValidationResult.REJECT,
}

#: Called with each accepted announcement and the gossip message that
#: carried it (``propagation_source`` is the peer to fetch from first);
#: returns ``False`` when the announcement was no news after all (the node
#: awaits that statement already), so that gossip does not forward it.
AcceptedCallback = Callable[[Verified, GossipMessage], bool | None]


class AnnouncementValidator:
    """A gossipsub validator (:data:`~guts.gossip.Validator`) of announcements.

    Args:
        held: what the node holds for a namespace (see
            :data:`~guts.replicate.announce.HeldStatement`).
        known: whether a repository announcement is no news (the node
            holds the repository, its identity chain as long); ``None``
            accepts every valid repository announcement.
        on_accept: called with each accepted announcement (to offer it to
            the :class:`~guts.replicate.coalesce.Coalescer`, say); if it
            returns ``False`` the verdict is ignore. An exception it
            raises is logged; the verdict stands.
        limits: the bounds on announcements.
        logger: where offences are logged.
        log_interval: seconds between two log lines for one peer and reason.
    """

    def __init__(
        self,
        held: HeldStatement,
        *,
        known: Callable[[VerifiedRepository], bool] | None = None,
        on_accept: AcceptedCallback | None = None,
        limits: AnnounceLimits | None = None,
        logger: logging.Logger = log,
        log_interval: float = 60.0,
    ) -> None:
        self.held = held
        self.known = known
        self.on_accept = on_accept
        self.limits = limits or AnnounceLimits()
        self._logger = logger
        self._log_interval = log_interval
        self._bad_input: dict[str, BadInputLog] = {}  # one per reason: a handful

    def assess(self, message: GossipMessage) -> Assessment:
        """The decision on ``message``, without side effects."""
        return assess(message.data, message.topic, self.held, known=self.known, limits=self.limits)

    def __call__(self, message: GossipMessage) -> ValidationResult:
        assessment = self.assess(message)
        if assessment.outcome is Outcome.REJECT:
            sender = message.propagation_source or message.author
            if sender is not None:
                bad_input = self._bad_input.get(assessment.reason)
                if bad_input is None:
                    bad_input = self._bad_input[assessment.reason] = BadInputLog(self._logger, self._log_interval)
                bad_input(sender, f"announcement rejected ({assessment.reason})", assessment.detail)
        elif assessment.outcome is Outcome.ACCEPT and self.on_accept is not None and assessment.verified is not None:
            try:
                if self.on_accept(assessment.verified, message) is False:
                    return ValidationResult.IGNORE
            except Exception:
                self._logger.exception("handling an accepted announcement on %r failed", message.topic)
        return _RESULTS[assessment.outcome]


def announcement_validator(
    held: HeldStatement,
    *,
    known: Callable[[VerifiedRepository], bool] | None = None,
    on_accept: AcceptedCallback | None = None,
    limits: AnnounceLimits | None = None,
) -> AnnouncementValidator:
    """An :class:`AnnouncementValidator` with the default logger."""
    return AnnouncementValidator(held, known=known, on_accept=on_accept, limits=limits)
