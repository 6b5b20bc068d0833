"""The options of the commands whose work grows with the gallery and can run on a Ray cluster."""

from __future__ import annotations

import argparse
import os

from embridge.core.cli.option_types import NON_BLANK
from embridge.core.errors import UsageError


def add_engine_flags(p: argparse.ArgumentParser) -> None:
    """--engine local|ray and where the Ray cluster is (shared by every command that scales out)."""
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="where the gallery work runs: this process (local) or a Ray cluster (ray)")
    p.add_argument("--ray-address", type=NON_BLANK, metavar="ADDR",
                   help="Ray cluster to attach to (default: RAY_ADDRESS, else a local Ray started for the job)")


# options that only a Ray run uses, with what each does: given with --engine local they would be ignored
RAY_ONLY = {"ray_address": ("--ray-address", "names the Ray cluster to run on"),
            "num_cpus": ("--num-cpus", "sizes the local Ray started for the job"),
            "actors": ("--actors", "sizes the Ray actor pool"),
            "shards": ("--shards", "splits the gallery across Ray workers")}


def check_engine_flags(args: argparse.Namespace) -> None:
    """Refuse a Ray-only option on a local run (it would be silently ignored), before any work starts."""
    if getattr(args, "engine", "ray") == "ray":
        given = getattr(args, "ray_address", None)
        if getattr(args, "num_cpus", None) is not None and (given or os.environ.get("RAY_ADDRESS")):
            named = "--ray-address" if given else "RAY_ADDRESS"  # a cluster keeps the CPUs it has
            raise UsageError("--num-cpus", f"sizes the local Ray started for the job; the cluster {named} names "
                             "keeps its own CPUs (leave --num-cpus out)")
        cpus, asked = os.cpu_count() or 1, getattr(args, "num_cpus", None)
        if asked is not None and asked > cpus:  # one worker process a CPU: more would only share these cores
            raise UsageError("--num-cpus", f"asks for {asked} CPUs, but this machine has {cpus}; the local Ray "
                             f"starts a worker a CPU, so give at most {cpus} (or leave it out for all of them)")
        return
    for attr, (flag, does) in RAY_ONLY.items():
        if getattr(args, attr, None) is not None:
            raise UsageError(flag, f"{does}; it needs --engine ray")
