"""Ctrl-C during a PostgreSQL call ends with Embridge's one line, not psycopg's warnings before it.

A KeyboardInterrupt (Ctrl-C, or SIGTERM as the command line raises it) can stop the client in the middle
of a ``COPY`` or a transaction, while the server is still busy with the command. psycopg's context
managers then roll back on the way out, the rollback fails ("another command is already in progress"),
and psycopg logs "error ignored in rollback ..." as a warning, which Python prints on stderr ahead of the
command line's own "interrupted" line. The connection is closed right after in any case (the server rolls
back what it had not committed), so that warning says nothing the user can act on. The filter here drops
psycopg's records logged while an interrupt is unwinding, and only those: every other warning still shows.
"""

from __future__ import annotations

import logging
import sys


class _DropWhileInterrupted(logging.Filter):
    """Refuse a record logged while a KeyboardInterrupt is being handled (it is in the handled exception's chain)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = sys.exc_info()[1]
        seen: set[int] = set()
        while exc is not None and id(exc) not in seen:
            if isinstance(exc, KeyboardInterrupt):
                return False
            seen.add(id(exc))
            exc = exc.__context__
        return True


_FILTER = _DropWhileInterrupted()


def quiet_interrupts() -> None:
    """Install the filter on psycopg's loggers (once each): a filter of a logger does not see its children's
    records, and psycopg logs through ``psycopg`` and module loggers below it (``psycopg.transaction``)."""
    names = {"psycopg", "psycopg.transaction", *(n for n in logging.Logger.manager.loggerDict
                                                if n.startswith("psycopg."))}
    for name in sorted(names):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
