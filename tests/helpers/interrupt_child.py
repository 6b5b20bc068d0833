"""Run the command line in a child process and send it SIGINT once its stderr shows the work is under way."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def interrupt_when(args: list[str], under_way: str | re.Pattern[str], delay: float = 0.0,
                   deadline_s: float = 120.0) -> tuple[int, list[str]]:
    """(exit status, stderr lines) of ``embridge ARGS`` interrupted ``delay`` seconds after the first
    stderr line matching ``under_way``; fails if the child ends or nothing matches before the deadline."""
    pattern = re.compile(under_way) if isinstance(under_way, str) else under_way
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}  # SIGABRT then prints every thread's stack (see below)
    child = subprocess.Popen([sys.executable, "-m", "embridge.core.cli.main", *args], cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(line.rstrip("\n") for line in child.stderr or ()),
                              daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + deadline_s
        while not any(pattern.match(line) for line in lines):
            assert child.poll() is None, f"{args[0]} ended before it was interrupted: {lines[-3:]}"
            assert time.monotonic() < deadline, f"{args[0]} never got under way"
            time.sleep(0.01)
        time.sleep(delay)
        child.send_signal(signal.SIGINT)
        try:
            code = child.wait(timeout=60)
        except subprocess.TimeoutExpired:  # a hang: fail with where each of its threads was waiting
            child.send_signal(signal.SIGABRT)
            child.wait(timeout=30)
            reader.join(5)
            raise AssertionError(f"{args[0]} did not end within 60 s of SIGINT; its stderr:\n" + "\n".join(lines)) from None
    finally:
        if child.poll() is None:
            child.kill()
    reader.join(5)
    return code, lines
