"""Repositories on Guts: identities, signed refs, and their git storage.

Pure cores, testable without git or sockets, beside one thin adapter over
the git command line (``../shared/STYLE.md``, "The repository wing"). Each
is a public submodule, imported by name (this package imports none of them,
so the pure ones load no trio):

- :mod:`guts.repo.rid`: the repository id, ``guts://<RID>``.
- :mod:`guts.repo.identity`: the identity document and its signed revisions.
- :mod:`guts.repo.revisions`: the rules of an identity's revision chain.
- :mod:`guts.repo.proposals`: pending identity revisions and when they
  take effect.
- :mod:`guts.repo.sigrefs`: signed ref statements, one per namespace.
- :mod:`guts.repo.canonical`: canonical refs from the delegates' statements.
- :mod:`guts.repo.refname`: ref names as git's ``check-ref-format`` judges them.
- :mod:`guts.repo.pktline`: git's pkt-line and side-band framing.
- :mod:`guts.repo.remote_helper`: git's remote-helper protocol, the
  helper's side (:mod:`guts.repo.helper_commands`: what git sends;
  :mod:`guts.repo.push_rules`: a push's options, results and git's rule
  for moving a ref).
- :mod:`guts.repo.layout`: where a repository's signed state lives in git.
- :mod:`guts.repo.storage`: bare repositories under ``GUTS_HOME/storage``:
  quarantined pack ingestion, ``update-ref`` transactions, ``upload-pack``.
- :mod:`guts.repo.state`: a node's repositories, their verified signed
  state kept in storage (init, publish, load, repair at start).
"""

__all__: list[str] = []
