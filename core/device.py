"""Choosing the compute device: auto means cuda, then mps, then cpu; an explicit GPU must exist."""

from __future__ import annotations

import torch

from embridge.core.errors import DeviceError, UnknownDeviceError


def available_devices() -> list[str]:
    """Devices usable on this machine, best first (always ends with ``cpu``)."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    found.append("cpu")
    return found


def resolve_device(name: str | None = "auto") -> torch.device:
    """Turn a user's device choice into a ``torch.device``; asking for an absent GPU is an error."""
    choice = (name or "auto").strip().lower()
    if choice == "auto":
        return torch.device(available_devices()[0])
    kind = choice.split(":", 1)[0]
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device '{name}' was requested but no CUDA GPU is available on this machine")
        dev = torch.device(choice)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device '{name}' was requested but only {torch.cuda.device_count()} CUDA GPU(s) exist"
            )
        return dev
    if kind == "mps":
        if "mps" not in available_devices():
            raise DeviceError(f"device '{name}' was requested but Apple MPS is not available")
        return torch.device("mps")
    raise UnknownDeviceError(f"unknown device '{name}': use auto, cpu, cuda, cuda:N or mps")


def describe_device(device: torch.device | str) -> str:
    """A human name for the status bar: 'CPU' or the GPU's product name."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    if dev.type == "mps":
        return "Apple GPU (MPS)"
    return "CPU"
