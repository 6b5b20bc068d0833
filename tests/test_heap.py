"""The migration's allocator settings: capped glibc arenas for the threads a streaming job starts."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PROBE = textwrap.dedent("""
    import ctypes, sys, threading
    from embridge.core.heap import cap_malloc_arenas, release_free_memory
    if sys.argv[1] == "capped":
        cap_malloc_arenas()
    libc = ctypes.CDLL(None)
    barrier = threading.Barrier(8)
    def work():
        barrier.wait()  # all eight allocate at once, as a store client's threads do
        keep = [bytearray(50_000) for _ in range(200)]
        del keep
    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    release_free_memory()
    libc.fopen.restype = ctypes.c_void_p
    fh = libc.fopen(sys.argv[2].encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(fh))
    libc.fclose(ctypes.c_void_p(fh))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's arenas exist on Linux only")
def test_a_capped_process_spreads_eight_threads_over_two_arenas(tmp_path: Path) -> None:
    heaps = {}
    for mode in ("capped", "default"):
        out = tmp_path / f"{mode}.xml"
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)}
        subprocess.run([sys.executable, "-c", PROBE, mode, str(out)], check=True, env=env, timeout=120)
        heaps[mode] = out.read_text().count("<heap nr=")
    assert heaps["capped"] <= 2, heaps
    assert heaps["default"] > heaps["capped"], heaps
