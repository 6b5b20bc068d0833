"""Aliases as symbolic links, for stores that live in plain folders (Parquet datasets, LanceDB tables).

A link is replaced by renaming a freshly made link over it, which POSIX makes atomic: a reader sees
the old target or the new one, never neither.
"""

from __future__ import annotations

import os
from pathlib import Path

from embridge.core.connectors.connector import VectorStoreError


def link_target(link: Path) -> str | None:
    """The name a link points at (None when ``link`` is not a link)."""
    return os.readlink(link) if link.is_symlink() else None


def swap_link(link: Path, target_name: str) -> None:
    """Point ``link`` at the sibling ``target_name`` in one atomic rename."""
    if link.exists() and not link.is_symlink():
        raise VectorStoreError(f"{link}: is a real table or folder, not an alias; choose another alias name")
    _drop_stale_tmp_links(link)
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp-link")
    tmp.unlink(missing_ok=True)
    os.symlink(target_name, tmp)
    os.replace(tmp, link)
    fd = os.open(link.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _drop_stale_tmp_links(link: Path) -> None:
    """Remove the temporary links of swaps killed before their rename (``.NAME.<pid>.tmp-link`` of a process
    that is gone); a live process's is left to it."""
    from embridge.core.store.rows import pid_alive

    prefix = f".{link.name}."
    for tmp in link.parent.glob(f"{prefix}*.tmp-link"):
        pid = tmp.name[len(prefix):-len(".tmp-link")]
        if pid.isdigit() and tmp.is_symlink() and not pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)
