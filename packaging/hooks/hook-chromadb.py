# Chroma builds its client from classes it names in strings (chromadb.config: the Rust bindings' API,
# the product telemetry, ...), which the analysis cannot follow: a frozen build without them could not
# open a Chroma store ("No module named 'chromadb.telemetry.product.posthog'").
from PyInstaller.utils.hooks import collect_data_files, collect_submodules

_USED = ("chromadb.api", "chromadb.auth", "chromadb.execution", "chromadb.telemetry", "chromadb.utils")
_SERVER = ("chromadb.auth.simple_rbac_authz",)  # the server's authorisation (it needs fastapi): never used here
hiddenimports = collect_submodules("chromadb", filter=lambda name: name == "chromadb" or (
    name.startswith(_USED) and not name.startswith(_SERVER)))
hiddenimports += collect_submodules("chromadb_rust_bindings")
datas = collect_data_files("chromadb")
