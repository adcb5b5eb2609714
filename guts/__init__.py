"""Guts: a libp2p-compatible peer-to-peer stack on Trio."""

__version__ = "0.1.0"
