"""Loading and describing embedding models: TorchScript, torch.export, state_dict, vectors, text.

See :mod:`embridge.core.models.loading` for the trust model (TorchScript and export programs run their own
code) and :mod:`embridge.core.models.inputs` for how workspace items become input batches.
"""

from embridge.core.model_kinds import KINDS
from embridge.core.models.builtin import ARCHITECTURES, build_model, classifier_weights, save_checkpoint
from embridge.core.models.inputs import make_inputs
from embridge.core.models.loading import LoadedModel, TextOptions, check_output, describe_model, load_model
from embridge.core.models.spec import MODALITIES, ModelSpec, infer_kind
from embridge.core.models.text import sentence_transformers_available
from embridge.core.models.vectors_only import VectorTable, save_vectors_model

__all__ = [
    "ARCHITECTURES",
    "KINDS",
    "MODALITIES",
    "LoadedModel",
    "ModelSpec",
    "TextOptions",
    "VectorTable",
    "build_model",
    "check_output",
    "classifier_weights",
    "describe_model",
    "infer_kind",
    "load_model",
    "make_inputs",
    "save_checkpoint",
    "save_vectors_model",
    "sentence_transformers_available",
]
