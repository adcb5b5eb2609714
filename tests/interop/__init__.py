"""Interop tests against real js-libp2p peers (see interop/README.md)."""
