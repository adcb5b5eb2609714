"""Repositories over the whole network: announcements of new repositories
and of new signed refs on gossip, the seeding policy that decides what a
node replicates, and (to come) the replication that acts on both.

- :mod:`guts.replicate.announce`: the announcements (``proto/announce.proto``),
  their topics, their checks against the signed state, and the
  coalescing of bursts into one fetch; pure.
- :mod:`guts.replicate.policy`: what a node seeds and whose namespaces it
  replicates, its block lists and limits; pure.
- :mod:`guts.replicate.seeds`: the seeded repositories, kept across
  restarts in SQLite.
"""
