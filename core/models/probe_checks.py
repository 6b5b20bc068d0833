"""What a model's probe batches must show before it is added: the same vector for an input on every call,
and for an item whatever else its batch holds (else stored vectors would depend on the run or the batch size).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embridge.core.errors import CheckpointError


def same_beside_others(first: np.ndarray, again: np.ndarray, source: str | Path) -> None:
    """Refuse a model whose vector for an item depends on the other items of its batch (batch norm left in
    training mode, a batch mean subtracted): the stored vectors would change with --batch-size."""
    worst = float(np.abs(_unit(first) - _unit(again)).max())
    if worst > 1e-3:
        raise CheckpointError(source, "the model gives an item another vector beside other items in its batch "
                              f"(largest difference of the unit vectors {worst:.3g}): its output depends on the "
                              "batch (batch normalisation left in training mode, or a text model that does not take "
                              "the attention mask and so sees the padding?); export it in evaluation mode, with "
                              "the attention mask as an input")


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / max(float(np.linalg.norm(x)), 1e-30)


def same_twice(first: np.ndarray, second: np.ndarray, source: str | Path) -> None:
    """Refuse a model whose vectors change from call to call (dropout traced in training mode, sampling):
    the gallery and the queries would each get other vectors than the ones measured."""
    if not np.allclose(first, second, rtol=1e-4, atol=1e-5):
        worst = float(np.abs(first - second).max())
        raise CheckpointError(source, f"the model gives different vectors for the same input on two runs (largest "
                              f"difference {worst:.3g}): randomness such as dropout is left on; export it in "
                              "evaluation mode")
