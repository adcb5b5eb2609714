"""Repositories over the whole network: seeds in the DHT, announcements
of new repositories and of new signed refs on gossip, and the seeding
policy that decides what a node replicates.

- :mod:`guts.replicate.providing`: a node provides the RID of every
  repository it seeds in the DHT, and a sync finds seeds there.
- :mod:`guts.replicate.replicator`: a node announces the refs it signs and
  the repositories it makes, and fetches what others announce, for the
  repositories it seeds (and, under policy ``all``, takes on new ones).
- :mod:`guts.replicate.announce`: the announcements (``proto/announce.proto``),
  their topics and their checks against the signed state; pure.
- :mod:`guts.replicate.coalesce`: bursts of announcements for one
  repository turned into one fetch of its newest state; pure.
- :mod:`guts.replicate.validator`: the gossip validator that accepts,
  ignores or rejects (charging the sender) each announcement.
- :mod:`guts.replicate.policy`: what a node seeds and whose namespaces it
  replicates, its block lists and limits; pure.
- :mod:`guts.replicate.seeds`: the person's choices (seeded, unseeded,
  blocked), kept across restarts in SQLite.
- :mod:`guts.replicate.seeding`: the node's seeding, the policy fed with
  those choices and the configuration, and the storage it measures.
- :mod:`guts.replicate.replicas`: how many seeds hold a signed statement
  (what ``git push`` reports).
"""
