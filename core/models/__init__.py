"""Loading and describing embedding models: TorchScript, torch.export, state_dict, vectors, text.

See :mod:`core.models.loading` for the trust model (TorchScript and export programs run their own
code) and :mod:`core.models.inputs` for how workspace items become input batches.
"""

from core.models.builtin import ARCHITECTURES, build_model, classifier_weights, save_checkpoint
from core.models.inputs import make_inputs
from core.models.loading import LoadedModel, TextOptions, check_output, describe_model, load_model
from core.models.spec import KINDS, MODALITIES, ModelSpec, infer_kind
from core.models.text import sentence_transformers_available
from core.models.vectors import VectorTable, save_vectors_model

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
