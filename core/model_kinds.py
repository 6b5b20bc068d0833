"""The kinds of model file Embridge loads, importable without torch: the command line checks ``--kind``
against them before anything is loaded, and ``bundle apply`` on a machine without torch parses the same
command line (``embridge.core.models`` imports torch)."""

KINDS = ("torchscript", "export", "state_dict", "vectors", "sentence_transformers", "transformers", "onnx")
