"""Repositories over the whole network: seeds in the DHT, announcements
of new repositories and of new signed refs on gossip, and the seeding
policy that decides what a node replicates.

Wired into the node today:

- :mod:`guts.replicate.providing`: a node provides the RID of every
  repository it holds in the DHT, and a sync finds seeds there.
- :mod:`guts.replicate.replicator`: a node announces the refs it signs
  and fetches what others announce, for the repositories it holds.
- :mod:`guts.replicate.announce`: the announcements (``proto/announce.proto``),
  their topics and their checks against the signed state; pure.
- :mod:`guts.replicate.coalesce`: bursts of announcements for one
  repository turned into one fetch of its newest state; pure.
- :mod:`guts.replicate.validator`: the gossip validator that accepts,
  ignores or rejects (charging the sender) each announcement.

Built and tested, not yet wired into the node (the seeding policy beyond
"the repositories this node holds" comes next):

- :mod:`guts.replicate.policy`: what a node seeds and whose namespaces it
  replicates, its block lists and limits; pure.
- :mod:`guts.replicate.seeds`: the seeded repositories and block lists,
  kept across restarts in SQLite.
"""
