"""Benchmarks of Guts side by side with py-libp2p: ``python -m bench``."""
