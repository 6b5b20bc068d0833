"""What a folder must be before it is opened as a workspace: checked, never created or repaired here."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from embridge.core.errors import StoreError
from embridge.core.paths import DB_NAME, STORE_FOLDERS

UNFINISHED_DEMO = ".embridge-demo-unfinished"  # written first and removed last by `embridge demo`


def make_store_folders(root: Path) -> None:
    """The folders every workspace holds (opening one made before a folder was added makes it too)."""
    for sub in STORE_FOLDERS:
        (root / sub).mkdir(exist_ok=True)


def holds_files(root: Path) -> bool:
    """True when any workspace folder holds a file (links are not entered)."""
    for sub in STORE_FOLDERS:
        folder = root / sub
        if folder.is_symlink() or (folder.exists() and any(os.scandir(folder))):
            return True
    return False


def check_database_file(root: Path) -> None:
    """The database must be a readable, non-empty regular file; never created or repaired here."""
    db_path = root / DB_NAME
    try:
        st = db_path.stat()
    except FileNotFoundError:
        raise StoreError(f"{root}: not an Embridge workspace (no {DB_NAME}); run 'embridge init' first") from None
    except OSError as exc:
        raise StoreError(f"{db_path}: cannot read the workspace database ({exc.strerror})") from exc
    if not stat.S_ISREG(st.st_mode):
        raise StoreError(f"{db_path}: the workspace database is not a regular file")
    if (root / UNFINISHED_DEMO).is_file():  # anything written into it would be removed by the next demo run
        kind = _demo_kind(root / UNFINISHED_DEMO)
        raise StoreError(f"{root}: an 'embridge demo' that was stopped before it finished; run 'embridge demo "
                         f"--workspace {root}{' --kind ' + kind if kind and kind != 'digits' else ''}' again to "
                         "finish it (it removes only what the demo made), or delete the folder")
    if st.st_size == 0:
        raise StoreError(f"{db_path}: the workspace database is empty (0 bytes); restore it from a backup. "
                         "Embridge leaves it and the workspace's files untouched")


def _demo_kind(marker: Path) -> str | None:
    """The kind of demo a stopped build was making, as its marker records it (None when unreadable)."""
    import json

    try:
        kind = json.loads(marker.read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        return None
    return kind if isinstance(kind, str) and kind.isidentifier() else None
