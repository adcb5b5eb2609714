"""Repositories on Guts: identities, signed refs, and their git storage.

Pure cores, testable without git or sockets, sit beside one thin adapter
over the git command line (see ``../shared/STYLE.md``, "The repository
wing").
"""

__all__: list[str] = []
