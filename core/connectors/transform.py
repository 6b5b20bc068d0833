"""The one place a migration turns old vectors into new-space vectors with a bundle.

Everything else in the store code calls :func:`load_transform` and :meth:`StoreTransform.apply`, so
the runtime underneath can change without touching the migration. It is the bundle's torch-free
runtime (:func:`embridge.core.bundle.load_bundle`): ``x @ W + b`` with numpy for linear layers, onnxruntime
for the others, float32 in and out; torch is not imported (TorchScript only for a format-1 bundle,
or an ONNX bundle on a machine without onnxruntime).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embridge.core.errors import BundleError


@dataclass
class StoreTransform:
    """A verified bundle seen from a store migration: which spaces it maps, and the mapping."""

    path: Path
    direction: str
    old_space: str
    new_space: str
    in_dim: int
    out_dim: int
    adapter_sha256: str  # the layer's identity (bundle.fingerprint): the same for every re-export of it
    probes: dict[str, Any] | None
    _loaded: Any
    old_names: tuple[str, ...] = ()  # earlier names of the old model (renamed since): markers may still say them
    new_names: tuple[str, ...] = ()

    def old_version(self, version: str) -> bool:
        """Whether ``version`` (a space field's model version) names the model this bundle maps from."""
        return version == self.old_space or version in self.old_names

    def new_version(self, version: str) -> bool:
        return version == self.new_space or version in self.new_names

    @property
    def warning(self) -> str | None:
        """The bundle's own warning when its measured numbers fail the compatibility criterion (as ``bundle
        inspect`` prints it first): a migration still runs, and says so beside its result."""
        from embridge.core.bundle.measured import verdict_line

        return verdict_line(self._loaded.manifest)

    def apply(self, old_vectors: np.ndarray) -> np.ndarray:
        """New-space float32 rows for old-model rows, L2-normalised as the bundle's manifest says a search
        takes them (its numbers were measured so): a store searching by inner product or L2 distance then
        ranks them as a cosine one does."""
        return self._loaded(old_vectors, normalise_output=True)


def migration_refusal(manifest: Mapping[str, Any]) -> str | None:
    """Why a bundle's layer cannot migrate a stored gallery (None when it can): only a forward layer maps the
    stored old vectors; the app checks this before offering a bundle, the migration when it loads one."""
    adapter = manifest.get("adapter") or {}
    if adapter.get("direction") == "forward":
        return None
    return (f"a {adapter.get('direction')} ({adapter.get('kind')}) layer maps new queries into the old space, so the "
            "stored gallery stays as it is and there is nothing to migrate; deploy the bundle on the query side, or "
            "export a forward (fct) layer to migrate a store")


def load_transform(bundle: str | Path) -> StoreTransform:
    """Verify the bundle (hashes and probes) and check it maps a stored gallery old -> new."""
    from embridge.core.bundle.fingerprint import layer_fingerprint
    from embridge.core.bundle.runtime import load_bundle

    loaded = load_bundle(bundle)
    refusal = migration_refusal(loaded.manifest)
    if refusal is not None:
        raise BundleError(f"{bundle}: {refusal}")
    if loaded.inputs != ["old"]:
        raise BundleError(f"{bundle}: this layer needs inputs {loaded.inputs}; a store migration can feed it only "
                          "the stored old vectors")
    return spaces_of(bundle, loaded, layer_fingerprint(loaded), loaded.probe_check)


def spaces_of(bundle: str | Path, loaded: Any, fingerprint: str, probes: dict[str, Any] | None = None) -> StoreTransform:
    """The loaded bundle as a map from the space its input is in to the space its output is in: the old model's
    to the new one's for a forward layer, the reverse for a backward one (a query-side layer)."""
    models = loaded.manifest.get("models", {})
    direction = str(loaded.manifest["adapter"]["direction"])
    ends = [(models.get(side) or {}, side) for side in ("old", "new")]
    (source, source_side), (output, output_side) = ends if direction == "forward" else ends[::-1]
    return StoreTransform(Path(bundle), direction, str(source.get("name") or source_side),
                          str(output.get("name") or output_side), loaded.in_dim, loaded.out_dim, fingerprint, probes,
                          loaded, earlier_names(source), earlier_names(output))


def earlier_names(entry: Any) -> tuple[str, ...]:
    """The names a model had before ``model rename`` (its spec keeps them), as its bundle entry records."""
    spec = entry.get("spec") if isinstance(entry, dict) else None
    names = spec.get("earlier_names") if isinstance(spec, dict) else None
    return tuple(str(n) for n in names) if isinstance(names, list) else ()
