"""Tunables of a yamux session and its trio adapter."""

from __future__ import annotations

from dataclasses import dataclass

from guts.errors import ConfigError

__all__ = ["INITIAL_WINDOW", "YamuxConfig"]

#: The window every stream starts with on both sides, fixed by the spec.
INITIAL_WINDOW = 256 * 1024


@dataclass(frozen=True, slots=True)
class YamuxConfig:
    """Settings shared by :class:`YamuxSession` and :class:`YamuxConnection`.

    Attributes:
        initial_window: receive window we grant each stream at first. The
            spec fixes the starting point at 256 KiB; a larger value is
            announced in the SYN / ACK window update, as go-yamux does.
        max_window: ceiling for receive-window auto-tuning (16 MiB, like
            go-yamux and js-libp2p). Also bounds what one stream may make
            us buffer.
        max_frame_payload: largest DATA payload we send in one frame.
            Large frames keep per-frame Python work low; the security
            layer below splits them into its own frames anyway.
        max_streams: live streams allowed on the session, both
            directions together. An inbound stream past this is refused
            with RST (not an error); opening one raises.
        max_negotiating: streams the peer opened that may be in protocol
            negotiation at once (see
            :class:`~guts.wire.NegotiationLimit`); past it a new one is
            refused before anything on it is read.
        max_control_backlog: bytes of frames the peer may make us queue
            (ping answers, ACKs, refusals) while our output is not being
            drained. Past this the peer is flooding us and the session
            fails with a protocol error instead of growing without bound.
        write_high_water: adapter only. Senders wait while this many bytes
            of output are queued and not yet taken by the writer task.
        read_size: adapter only. ``max_bytes`` for transport reads.
        keepalive_interval: adapter only. Seconds between yamux pings
            (which also refresh the RTT estimate that drives auto-tuning),
            or ``None`` for no keepalive.
        close_timeout: adapter only. How long closing the connection
            waits for queued output (the GoAway) to reach the transport.
    """

    initial_window: int = INITIAL_WINDOW
    max_window: int = 16 * 1024 * 1024
    max_frame_payload: int = 256 * 1024
    max_streams: int = 1024
    max_negotiating: int = 64
    max_control_backlog: int = 256 * 1024
    write_high_water: int = 1024 * 1024
    read_size: int = 256 * 1024
    keepalive_interval: float | None = 30.0
    close_timeout: float = 5.0

    def __post_init__(self) -> None:
        if self.initial_window < INITIAL_WINDOW:
            raise ConfigError("yamux initial_window may not be below 256 KiB")
        if not self.initial_window <= self.max_window <= 0xFFFF_FFFF:
            raise ConfigError("yamux max_window must be in [initial_window, 2**32 - 1]")
        if self.max_frame_payload < 1:
            raise ConfigError("yamux max_frame_payload must be positive")
        if self.max_streams < 1:
            raise ConfigError("yamux max_streams must be positive")
        if self.max_negotiating < 1:
            raise ConfigError("yamux max_negotiating must be positive")
        if self.max_control_backlog < 1024:
            raise ConfigError("yamux max_control_backlog must be at least 1 KiB")
        if self.write_high_water < 1 or self.read_size < 1:
            raise ConfigError("yamux write_high_water and read_size must be positive")
        if self.keepalive_interval is not None and self.keepalive_interval <= 0:
            raise ConfigError("yamux keepalive_interval must be positive or None")
        if self.close_timeout < 0:
            raise ConfigError("yamux close_timeout may not be negative")
