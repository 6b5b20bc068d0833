# Keep the engine's .py sources beside the bytecode: torch.jit.script compiles adapters from their
# Python source (inspect.getsource), which a frozen app otherwise lacks.
module_collection_mode = "pyz+py"
