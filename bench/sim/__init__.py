"""``make sim``: simulations of the DHT and gossip layers, and of a push
through a network of seeds.

Each simulation is a module of this package with a ``NAME`` (a short
word, e.g. ``"dht"``), a ``DESCRIPTION`` and ``run(quick: bool) -> str``,
which runs it, prints progress to stderr and returns its results as
Markdown. ``python -m bench.sim`` finds the modules itself, so adding a
simulation means adding a module, nothing else.
"""
