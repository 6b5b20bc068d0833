"""Tiny TorchScript embedders whose output is deliberately wrong, for bad-checkpoint tests."""

from __future__ import annotations

from pathlib import Path

import torch


class OddOutput(torch.nn.Module):
    """A vector model (8 -> 4) whose output is wrong in the way ``mode`` says ('ok' is correct)."""

    def __init__(self, mode: str = "ok") -> None:
        super().__init__()
        self.mode = mode
        self.layer = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.layer(x)
        if self.mode == "3d":
            return y.unsqueeze(1)
        if self.mode == "nan":
            return y * float("nan")
        if self.mode == "inf":
            return y + float("inf")
        if self.mode == "rows":
            return y[:1]  # one row whatever the batch
        if self.mode == "zero":
            return y * 0.0
        if self.mode == "constant":  # zero weights with a bias: one vector for every input
            return y * 0.0 + torch.tensor([1.0, -2.0, 0.5, 3.0])
        if self.mode == "one_way":  # one direction, lengths following the input
            return (x.sum(dim=1, keepdim=True).abs() + 1.0) * torch.tensor([1.0, -2.0, 0.5, 3.0])
        if self.mode == "dropout":  # dropout kept on, as a trace taken in training mode keeps it
            return torch.nn.functional.dropout(y, 0.5, True)
        if self.mode == "batch_mean":  # each vector less its batch's mean: another vector beside other items
            return y - y.mean(dim=0, keepdim=True)
        if self.mode == "batch_norm":  # batch statistics, as batch normalisation left in training mode uses
            return (y - y.mean(dim=0, keepdim=True)) / (y.std(dim=0, keepdim=True) + 1e-5) + 0.1
        if self.mode == "complex":
            return torch.complex(y, y)
        if self.mode == "no_dims":
            return y[:, :0]
        if self.mode == "huge64":
            return y.double() * 1e200
        return y


def scripted_model(path: Path, mode: str = "ok") -> Path:
    """Save an :class:`OddOutput` as TorchScript at ``path``."""
    torch.jit.save(torch.jit.script(OddOutput(mode)), str(path))
    return path
