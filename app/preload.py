"""Import the heavy native packages (torch, faiss) from a worker without stalling the GUI thread.

A plain ``import torch`` in a background thread still freezes the event loop for a quarter of a
second or more: CPython holds the GIL while it ``dlopen``s an extension module (and runs the C++
static initialisers of every library it pulls in), and a full garbage collection over the
hundreds of thousands of objects the import creates holds it again. So, per package:

1. ``dlopen`` its extension module's library through ctypes, a foreign call that releases the
   GIL, with the flags CPython itself uses; the import then finds the library already loaded;
2. import it with the cyclic collector paused, then ``gc.freeze()`` the imported objects before
   resuming it, so no later collection (in any thread, the GUI's included) walks them.

Every step is best effort: a library not where expected, or a platform without ``dlopen``, only
means the plain import runs.

Some modules cannot be helped that way: their extension's own set-up function runs for a long
time with the GIL held (``ml_dtypes``, which ``onnx`` and so the ONNX export of a bundle import,
registers its number types with numpy for about half a second). Those are imported before the
window exists (:func:`import_gil_holders`), where the wait delays the first frame a little
instead of freezing a window the user already sees.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import importlib.util
import logging
import sys
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
# one preload at a time: two threads importing overlapping packages in different orders could
# each hold a module lock the other waits for
_ONE_AT_A_TIME = threading.Lock()

# the library behind each package's extension module, relative to the package folder; dlopen
# pulls in what it links against (libtorch_cpu, libfaiss, OpenMP, BLAS)
NATIVE_LIBRARIES = {
    "torch": ("lib/libtorch_python.so", "lib/libtorch_python.dylib"),
    "faiss": ("_swigfaiss.abi3.so", "_swigfaiss.so"),
}


def _dlopen() -> Any:
    if not hasattr(sys, "getdlopenflags"):
        return None
    try:
        fn = ctypes.CDLL(None).dlopen
    except (AttributeError, OSError):
        return None
    fn.restype, fn.argtypes = ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_int]
    return fn


# modules whose extension's set-up holds the GIL for hundreds of milliseconds, whichever thread imports them
GIL_HOLDERS = ("ml_dtypes",)


def import_gil_holders() -> dict[str, str]:
    """Import :data:`GIL_HOLDERS` now, on the calling thread (before the window shows); a module
    that is not installed is skipped ('absent'), one that fails is logged ('failed: <why>')."""
    outcome: dict[str, str] = {}
    for name in GIL_HOLDERS:
        if name in sys.modules:
            outcome[name] = "already imported"
            continue
        if importlib.util.find_spec(name) is None:
            outcome[name] = "absent"
            continue
        try:
            importlib.import_module(name)
            outcome[name] = "imported"
        except Exception as exc:  # a broken optional package must not stop the app: its user reports it
            log.warning("could not import %s before the window: %s", name, exc)
            outcome[name] = f"failed: {exc}"
    return outcome


def load_native_library(package: str) -> bool:
    """dlopen ``package``'s extension library with the GIL released; False when not done."""
    dlopen = _dlopen()
    spec = importlib.util.find_spec(package) if package not in sys.modules else None
    if dlopen is None or spec is None or not spec.origin:
        return False
    root = Path(spec.origin).parent
    for rel in NATIVE_LIBRARIES.get(package, ()):
        path = root / rel
        if path.is_file():
            return bool(dlopen(str(path).encode(), sys.getdlopenflags()))
    return False


def preload(*packages: str) -> dict[str, str]:
    """Import ``packages`` in order (torch before faiss: one OpenMP load order) with the least
    GIL hold; meant for a worker thread right after the window shows. Returns how each went:
    'native' (library preloaded), 'plain', 'already imported' or 'failed: <why>' (logged; the
    page that needs the package reports the error when it is used)."""
    with _ONE_AT_A_TIME:
        return _preload(packages)


def _preload(packages: tuple[str, ...]) -> dict[str, str]:
    outcome: dict[str, str] = {}
    for package in packages:
        if package in sys.modules:
            outcome[package] = "already imported"
            continue
        try:
            loaded = load_native_library(package)
        except (OSError, ValueError, ImportError) as exc:
            log.debug("no native preload for %s: %s", package, exc)
            loaded = False
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            importlib.import_module(package)
            outcome[package] = "native" if loaded else "plain"
        except ImportError as exc:
            log.warning("could not import %s in the background: %s", package, exc)
            outcome[package] = f"failed: {exc}"
        finally:
            gc.freeze()  # before re-enabling: else the first collection walks every new object
            if was_enabled:
                gc.enable()
    return outcome
