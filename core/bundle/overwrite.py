"""What ``bundle export --overwrite`` may replace: a bundle, and nothing the user put beside or inside it.

A bundle folder is replaced whole, so a file the user added inside it (notes, a copy of the gallery
they edited) would be deleted with it. Such files are never deleted: the export is refused and the
message names them, so the user can move them away. Only the names the folder's own manifest lists
(plus ``manifest.json`` and ``CHECKSUMS``) and the folders holding them count as the bundle's.
"""

from __future__ import annotations

import json
import os
import stat
import zipfile
from pathlib import Path

from embridge.core.bundle.manifest import CHECKSUMS, MANIFEST
from embridge.core.errors import BundleError
from embridge.core.paths import absolute, file_kind

SHOWN = 3  # foreign names given in the message


def bundle_above(out: Path) -> Path | None:
    """The bundle folder ``out`` would land inside, if any: a file written there is not in its manifest,
    so the bundle would no longer verify."""
    for folder in absolute(out).parents:
        if (folder / MANIFEST).is_file() and (folder / CHECKSUMS).is_file():
            return folder
    return None


def replaceable_bundle(out: Path) -> None:
    """``--overwrite`` replaces a bundle only: never a link, a plain folder, any other file, or a
    bundle folder holding files that are not the bundle's."""
    if out.is_symlink():
        raise BundleError(f"{out}: is a symbolic link; an export replaces only an earlier bundle, not what a "
                          "link points to")
    if out.is_dir():
        if out.suffix.lower() != ".zip" and not any(out.iterdir()):
            return  # an empty folder (a replaced bundle's name, from a system that could not swap it in one step)
        if not ((out / MANIFEST).is_file() and (out / CHECKSUMS).is_file()):
            raise BundleError(f"{out}: is a folder but not a bundle (no {MANIFEST} and {CHECKSUMS}); "
                              "an export replaces only an earlier bundle")
        if out.suffix.lower() == ".zip":
            raise BundleError(f"{out}: is a bundle folder; a .zip output would replace it with a file")
        foreign = foreign_files(out)
        if foreign:
            more = f" and {len(foreign) - SHOWN} more" if len(foreign) > SHOWN else ""
            raise BundleError(f"{out}: holds files that are not part of the bundle ({', '.join(foreign[:SHOWN])}"
                              f"{more}); replacing the bundle would delete them, so move them out of the folder "
                              "first or choose another output path")
        return
    kind = file_kind(os.stat(out).st_mode)
    if kind != "a regular file":
        raise BundleError(f"{out}: is {kind}; an export replaces only an earlier bundle")
    if out.suffix.lower() != ".zip":
        raise BundleError(f"{out}: is a file; a bundle folder would replace it (use a path ending in .zip)")
    try:
        with zipfile.ZipFile(out) as zf:
            names = set(zf.namelist())
    except (OSError, zipfile.BadZipFile):
        names = set()
    if MANIFEST not in names or CHECKSUMS not in names:
        raise BundleError(f"{out}: is not a bundle (.zip with {MANIFEST} and {CHECKSUMS}); an export "
                          "replaces only an earlier bundle")


def _listed(folder: Path) -> set[str]:
    """The names the folder's manifest lists, with the manifest and CHECKSUMS."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
        if not isinstance(files, dict):
            raise TypeError("files is not an object")
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise BundleError(f"{folder}: its {MANIFEST} cannot be read ({type(exc).__name__}), so which files are "
                          "the bundle's is unknown; an export replaces only an earlier bundle") from None
    return {str(name) for name in files} | {MANIFEST, CHECKSUMS}


def foreign_files(folder: Path) -> list[str]:
    """Relative names under ``folder`` that its bundle does not list, sorted (links are never entered)."""
    listed = _listed(folder)
    parents = {"/".join(name.split("/")[:i]) for name in listed for i in range(1, name.count("/") + 1)}
    foreign: list[str] = []
    for top, dirs, files in os.walk(folder, followlinks=False):
        base = Path(top)
        outside = set()
        for name in dirs:
            rel = (base / name).relative_to(folder).as_posix()
            if rel not in parents or stat.S_ISLNK(os.lstat(base / name).st_mode):
                foreign.append(rel + "/")
                outside.add(name)
        dirs[:] = [d for d in dirs if d not in outside]
        for name in files:
            rel = (base / name).relative_to(folder).as_posix()
            if rel not in listed or not stat.S_ISREG(os.lstat(base / name).st_mode):
                foreign.append(rel)
    return sorted(foreign)
