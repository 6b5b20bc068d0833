"""Compatibility layers between an old and a new embedding model (see docs in each module).

Every adapter is a ``torch.nn.Module`` with ``kind``, ``direction`` ('backward' new->old,
'forward' old->new, 'joint' for bt2), ``in_dim``, ``out_dim`` and ``config()``; all are
TorchScript-able. Use :func:`adapt_queries` / :func:`adapt_gallery` / :func:`new_space_vectors`
to apply any of them without special cases.
"""

from embridge.core.adapters.adapt_arrays import adapt_gallery, adapt_queries, new_space_vectors
from embridge.core.adapters.adapter import Adapter
from embridge.core.adapters.adapter_file import (
    adapter_from_payload,
    adapter_payload,
    export_torchscript,
    load_adapter,
    plain_copy,
    save_adapter,
    script_adapter,
)
from embridge.core.adapters.fusion import FusionAdapter
from embridge.core.adapters.heads import BT2Adapter
from embridge.core.adapters.linear import AffineAdapter, LowRankAdapter, ProcrustesAdapter
from embridge.core.adapters.mlp import BCTAdapter, FCTAdapter, MLPAdapter
from embridge.core.adapters.registry import METHODS, MethodInfo, build_adapter, canonical_kind

__all__ = [
    "METHODS",
    "Adapter",
    "AffineAdapter",
    "BCTAdapter",
    "BT2Adapter",
    "FCTAdapter",
    "FusionAdapter",
    "LowRankAdapter",
    "MLPAdapter",
    "MethodInfo",
    "ProcrustesAdapter",
    "adapt_gallery",
    "adapt_queries",
    "adapter_from_payload",
    "adapter_payload",
    "build_adapter",
    "canonical_kind",
    "export_torchscript",
    "load_adapter",
    "new_space_vectors",
    "plain_copy",
    "save_adapter",
    "script_adapter",
]
