"""Where Embridge may write, what it may delete, and which names may become file names.

Every command that writes a file the user named checks it with :func:`check_output` first: an
output is never a workspace, inside one, a folder holding one, or any input (nor inside or above
an input folder, such as an unzipped bundle). Deleting never follows a symbolic link and only
removes names this program gives its own files (:func:`owned_temp_name`). User-chosen names that
become file names (model and vector-set names) go through :func:`check_name`.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from embridge.core.errors import InputError, UsageError

DB_NAME = "embridge.db"
STORE_FOLDERS = ("vectors", "models", "adapters", "reports", "bundles")  # what every workspace holds
STAGE_FOLDER = "scale-jobs"  # staged items and chunk outputs of backfills
TMP_PREFIX = ".tmp-"
TEMP_TAG_HEX = 12  # a temp name is TMP_PREFIX, this many random hex digits, '-' and the final name
TEMP_MAX_AGE_S = 3600  # older temp files belong to a writer that died, not one still running
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
# temp names this program writes: temp_path_for (".tmp-<12 hex>-name") and scratch folders
_OWNED_TEMP = re.compile(rf"{re.escape(TMP_PREFIX)}(?:[0-9a-f]{{{TEMP_TAG_HEX}}}-.+|scratch-[A-Za-z0-9_]+)")


def absolute(path: str | Path) -> Path:
    """``path`` made absolute with links resolved (it need not exist)."""
    try:
        return Path(os.path.abspath(os.fspath(path))).resolve()
    except RuntimeError as exc:
        raise as_os_error(exc) from None


def as_os_error(exc: RuntimeError) -> OSError | RuntimeError:
    """Python before 3.13 reports a link that leads back to itself from ``Path.resolve`` as a RuntimeError
    ("Symlink loop from '...'"): the system's ELOOP error naming that path, as later versions raise it, so it
    is told as a path's problem rather than a bug; any other RuntimeError unchanged."""
    found = re.fullmatch(r"Symlink loop from (['\"])(.*)\1", str(exc), re.DOTALL)
    if found is None:
        return exc
    return OSError(errno.ELOOP, os.strerror(errno.ELOOP), found.group(2))


def is_within(path: str | Path, folder: str | Path) -> bool:
    """True when ``path`` is ``folder`` or lies below it (both resolved)."""
    p, f = absolute(path), absolute(folder)
    return p == f or f in p.parents


def _workspace_above(path: Path) -> Path | None:
    for folder in (path, *path.parents):
        try:
            if (folder / DB_NAME).exists():
                return folder
        except OSError:
            continue
    return None


def workspace_below(folder: str | Path) -> Path | None:
    """A workspace inside the existing ``folder`` (never entering a symbolic link), or None."""
    root = Path(folder)
    if not is_real_dir(root):
        return None
    for top, dirs, files in os.walk(root, followlinks=False):
        if DB_NAME in files:
            return Path(top)
        dirs[:] = [d for d in dirs if is_real_dir(Path(top) / d)]
    return None


TEMP_NAME_EXTRA = len(TMP_PREFIX) + TEMP_TAG_HEX + 1  # what a temp name adds to the name it is written for


def _check_name_length(target: Path, where: str) -> None:
    """Refuse a name that only fits the file system without the temp prefix every output is written under
    first (it failed after the work was done, naming the folder)."""
    try:
        limit = os.pathconf(next(p for p in (target.parent, *target.parents) if p.exists()), "PC_NAME_MAX")
    except (OSError, ValueError, StopIteration):
        limit = 255
    size = len(os.fsencode(target.name))
    if size + TEMP_NAME_EXTRA > limit:
        raise InputError(where, f"its name is {size} bytes long; Embridge writes an output under a temporary name "
                                f"{TEMP_NAME_EXTRA} bytes longer first, and this file system takes names of at most "
                                f"{limit} bytes: choose a name of at most {limit - TEMP_NAME_EXTRA} bytes")


def check_output(out: str | Path, *, label: str = "--out", workspace: str | Path | None = None,
                 inputs: Iterable[str | Path | None] = (), below: bool = False) -> Path:
    """Refuse an output path that would overwrite or land inside what the command reads or keeps.

    ``below``: an existing output folder that holds any workspace is refused too (for outputs that
    are folders a command writes into, such as vector-store datasets). Raises :class:`InputError`
    naming ``out``; returns it (unchanged) when it is safe.
    """
    target = absolute(out)
    where = f"{label} {out}"
    _check_name_length(target, where)
    if workspace is not None:
        ws = absolute(workspace)
        if target == ws:
            raise InputError(where, f"is the workspace {workspace}; write outputs outside it")
        if ws in target.parents:
            raise InputError(where, f"is inside the workspace {workspace}; write outputs outside it")
        if target in ws.parents:
            raise InputError(where, f"is a folder holding the workspace {workspace}; write outputs elsewhere")
    found = _workspace_above(target)
    if found is not None:
        if found == target:
            raise InputError(where, f"is the workspace {found}; write outputs outside it")
        raise InputError(where, f"is inside the workspace {found}; write outputs outside it")
    held = workspace_below(target) if below else None
    if held is not None:
        raise InputError(where, f"is a folder holding the workspace {held}; write outputs elsewhere")
    for given in inputs:
        if given is None:
            continue
        source = absolute(given)
        if target == source:
            raise InputError(where, f"is also an input ({given}); choose another output")
        if source in target.parents:
            raise InputError(where, f"is inside the input {given}; choose another output")
        if target in source.parents:
            raise InputError(where, f"is a folder holding the input {given}; choose another output")
    return Path(out)


def check_input_outside(given: str | Path, workspace: str | Path, label: str = "--path") -> None:
    """Refuse an input that is the workspace, a folder holding it, or lies in what the store keeps (its
    database, vector files, model copies, layers, reports): an import would read the workspace's own files
    as items of the gallery. Other folders inside it (the demo's images) are inputs like any other."""
    source, ws = absolute(given), absolute(workspace)
    where = f"{label} {given}"
    if source == ws:
        raise InputError(where, f"is the workspace {workspace}; import items from files outside it")
    if source.is_dir() and source in ws.parents:
        raise InputError(where, f"is a folder holding the workspace {workspace}, whose own files it would import "
                         "as items; import a folder that does not hold the workspace")
    if ws in source.parents:
        top = source.relative_to(ws).parts[0]
        if top in STORE_FOLDERS or top == STAGE_FOLDER or top.startswith(DB_NAME):
            raise InputError(where, f"is the workspace's own {top}; import items from files the workspace does "
                             "not keep")


def check_name(name: object, what: str = "model name") -> str:
    """A name that becomes a file name: letters, digits, ``.``, ``_``, ``-``; at most 64; no path parts.
    Refused as a usage error (exit status 2) when ``what`` is an option (``--name``), as argparse refuses."""
    text = name if isinstance(name, str) else ""
    if (not _NAME.fullmatch(text) or text.endswith(".") or ".." in text
            or text.split(".")[0].lower() in _WINDOWS_RESERVED):
        refuse = UsageError if what.startswith("--") else InputError
        raise refuse(f"{what} {name!r}", "use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit "
                     "(it becomes a file name, so no '/', '\\', '..' or spaces)")
    return text


def name_from(text: str, fallback: str) -> str:
    """A valid name (:func:`check_name`) made from ``text`` the user did not choose as a name (a file's
    stem): accents dropped, every other character outside the rule a '-', cut to 64; ``fallback`` when
    nothing is left or the result is a reserved device name."""
    import unicodedata

    try:
        return check_name(text, "name")  # a valid name stays as it is
    except InputError:
        pass
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    name = re.sub(r"-{2,}", "-", re.sub(r"[^A-Za-z0-9._-]", "-", plain))
    name = re.sub(r"\.{2,}", ".", name).lstrip("._-")[:64].rstrip(".")
    if not name or name.split(".")[0].lower() in _WINDOWS_RESERVED:
        return fallback
    return check_name(name, "name")


def child(folder: Path, *parts: str) -> Path:
    """``folder / parts`` after checking that it stays inside ``folder`` (a stored name cannot escape)."""
    path = folder.joinpath(*parts)
    if not is_within(path, folder) or any(p in ("", ".", "..") or "/" in p or "\\" in p for p in parts):
        raise InputError(path, f"escapes its folder {folder}")
    return path


def is_real_dir(path: Path) -> bool:
    """A folder that is not a symbolic link (lstat)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def owned_temp_name(name: str) -> bool:
    """True for names of temp files and folders this program creates."""
    return bool(_OWNED_TEMP.fullmatch(name))


def owned_temps(folder: Path) -> Iterator[Path]:
    """Temp files and folders of ours under ``folder``, never entering a symbolic link."""
    if not is_real_dir(folder):
        return
    for top, dirs, files in os.walk(folder, followlinks=False):
        base = Path(top)
        for name in [*files, *dirs]:
            if owned_temp_name(name):
                yield base / name
        dirs[:] = [d for d in dirs if not owned_temp_name(d) and is_real_dir(base / d)]


def shown_path(path: str | bytes | os.PathLike[str]) -> str:
    """The path an error line names, as given: a temp file of ours, gone by the time the user reads the
    line, is named by its folder instead, the place a permission or the space is missing."""
    text = os.fsdecode(path)
    p = Path(text)
    return str(p.parent) if p.name.startswith(TMP_PREFIX) else text


def sweep_old_temps(folder: Path, older_than: float) -> None:
    """Remove our temp files and folders under ``folder`` last changed before ``older_than`` (a time
    stamp): a writer killed before its rename left them, and a live one touched its own since."""
    for tmp in list(owned_temps(folder)):
        try:
            if tmp.lstat().st_mtime < older_than:
                remove_no_follow(tmp)
        except OSError:
            continue  # swept by a concurrent opener, or not ours to remove


def remove_if_untouched(path: Path, cutoff: float) -> bool:
    """Remove ``path`` (no link followed) when neither its content nor its entry changed since ``cutoff``
    (a time stamp); False when it did, or when it is gone already (a concurrent opener swept it)."""
    try:
        st = os.lstat(path)
        if max(st.st_mtime, st.st_ctime) >= cutoff:
            return False
        remove_no_follow(path)
    except OSError:
        return False
    return True


def remove_no_follow(path: Path) -> None:
    """Remove a file, a link (the link itself) or a folder tree without following any link."""
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)  # rmtree never follows links inside the tree
    else:
        os.unlink(path)


def file_kind(mode: int) -> str:
    """What a file of ``mode`` (from ``os.stat`` or ``os.lstat``) is, in the words of error messages."""
    if stat.S_ISREG(mode):
        return "a regular file"
    return ("a symbolic link" if stat.S_ISLNK(mode) else "a folder" if stat.S_ISDIR(mode)
            else "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")


def irregular_kind(path: str | Path) -> str | None:
    """What ``path`` is (a link followed) when it is neither a regular file nor a folder: 'a FIFO (named pipe)',
    'a device'...; None otherwise, and for a path that cannot be read (its reader names it)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return None if stat.S_ISREG(mode) or stat.S_ISDIR(mode) else file_kind(mode)


def check_regular(path: str | Path, label: str = "input", folders: bool = True) -> Path:
    """Refuse what is neither a regular file nor (when allowed) a folder: FIFOs, devices, sockets.

    Reading a FIFO blocks forever; reading a device may never end.
    """
    p = Path(path)
    try:
        mode = os.stat(p).st_mode
    except FileNotFoundError:
        raise InputError(p, f"{label} not found") from None
    except OSError as exc:
        raise InputError(p, f"cannot read the {label} ({exc.strerror})") from exc
    if stat.S_ISREG(mode) or (folders and stat.S_ISDIR(mode)):
        return p
    kind = file_kind(mode)
    wanted = "a regular file or folder" if folders else "a regular file"
    raise InputError(p, f"is {kind}; the {label} must be {wanted}")


def check_folder_target(target: Path, option: str, *, within: bool = False, room: int = 0) -> None:
    """An output folder (a local store, a dataset folder) this process can write in: an existing file at its
    path, or a folder that takes no file, is refused here naming the option, before a job's reading and
    computing, not after it. ``within``: ``target`` is made inside its folder (a bundle, a JUnit file), so
    only that folder is checked; ``room``: bytes the probe writes (and syncs), to find a full disk too."""
    probe_writable(folder_to_write(target, option, within=within), f"{option} {target}", room)


def folder_to_write(target: Path, option: str, *, within: bool = False) -> Path:
    """The nearest existing folder ``target`` would be made in (``within``: its parent's), refused when the
    path itself says it cannot be one: a file at ``target`` (unless ``within``) or on the way to it."""
    where = f"{option} {target}"
    try:
        if not within and target.exists() and not target.is_dir():
            raise InputError(where, "is a file, not a folder; give a new folder or an existing store's folder")
        folder = target.parent if within else target
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            raise InputError(where, f"{folder} is a file, not a folder, so nothing can be written under it")
    except OSError as exc:  # a folder on the way that may not be entered
        raise InputError(where, f"cannot be checked ({exc.strerror or exc})") from None
    return folder


def probe_writable(folder: Path, where: str, room: int = 0) -> None:
    """Write (and with ``room`` bytes, sync) a probe file in ``folder``, refusing one that takes none."""
    probe = folder / f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}-probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            left = memoryview(bytes(room))
            while left:  # a write near the limit is short; the next one raises ENOSPC or EFBIG
                left = left[os.write(fd, left):]
            if room:
                os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise InputError(where, write_problem(exc, folder)) from None
    finally:
        try:
            os.unlink(probe)
        except OSError:
            pass


def write_problem(exc: OSError, folder: Path) -> str:
    """Why nothing could be written in ``folder``: a full disk (or quota, or file size limit), or anything else."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return f"not enough disk space in {folder} ({exc.strerror})"
    return f"cannot write in {folder} ({exc.strerror or exc})"
