"""The bundled demo: a classic backward-compatibility setting on the UCI handwritten digits.

An **old** embedder (a small MLP, 32-d) is trained only on digits 0-4; a **new** one (a small CNN,
64-d) on all ten. Both are trained here, seeded, on CPU in seconds, and saved as TorchScript, so
the demo exercises the same paths as a user's checkpoints: images are written as PNG files and
imported as an image folder, the models are added as files, and vectors come from embedding. The
old model embeds the whole gallery (today's index); the new model embeds an evaluation sample of
the gallery plus the queries, which is what training and reports need.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from embridge.core.demo_workspace import abandon_demo, finish_demo, start_demo
from embridge.core.progress import ProgressFn, StopFn, check_stop, no_progress
from embridge.core.store import Workspace

DATA_FILE = Path(__file__).resolve().parent.parent / "resources" / "demo" / "digits.npz"
OLD_CLASSES = (0, 1, 2, 3, 4)
EMBEDDER_TRAIN, GALLERY, QUERIES, EVAL_SAMPLE = 600, 997, 200, 600


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """Images as float32 in [0, 1] quantised exactly as their PNG files decode, and int labels."""
    with np.load(DATA_FILE, allow_pickle=False) as data:
        pixels = np.round(data["images"].astype(np.float32) * (255.0 / 16.0))
        return (pixels / 255.0).astype(np.float32), data["labels"].astype(np.int64)


def _train_embedder(module: Any, x: np.ndarray, y: np.ndarray, epochs: int, seed: int) -> Any:
    """Cross-entropy training of embedder + classifier head; returns the module in eval mode."""
    import torch

    torch.manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.AdamW(module.parameters(), lr=3e-3, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    module.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=gen).split(64):
            loss = torch.nn.functional.cross_entropy(module.classifier(module(xt[idx])), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return module.eval()


def train_demo_models(images: np.ndarray, labels: np.ndarray, seed: int) -> tuple[Any, Any]:
    """Old: MLP on digits 0-4 only (32-d). New: CNN on all digits (64-d)."""
    import torch

    from embridge.core.models.builtin import MLPEmbedder, SmallCNNEmbedder

    torch.manual_seed(seed)
    x = images[:, None, :, :]
    seen = np.isin(labels, OLD_CLASSES)
    old = MLPEmbedder(input_dim=64, out_dim=32, hidden=[64], num_classes=len(OLD_CLASSES))
    old = _train_embedder(old, x[seen], labels[seen], epochs=40, seed=seed)
    new = SmallCNNEmbedder(out_dim=64, in_channels=1, height=8, width=8, channels=[32, 64], num_classes=10)
    new = _train_embedder(new, x, labels, epochs=40, seed=seed + 1)
    return old, new


def _save_torchscript(module: Any, path: Path) -> None:
    import torch

    example = torch.zeros(2, 1, 8, 8)
    with torch.no_grad():
        traced = torch.jit.trace(module, example)
    torch.jit.save(traced, str(path))


def _write_pngs(root: Path, images: np.ndarray, labels: np.ndarray, index: np.ndarray) -> None:
    from PIL import Image

    for i in index:
        folder = root / str(int(labels[i]))
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.round(images[i] * 255).astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(folder / f"digit-{int(i):04d}.png")


def build_demo(path: str | Path, seed: int = 0, on_progress: ProgressFn | None = None,
               should_stop: StopFn | None = None) -> Workspace:
    """Create the demo workspace at ``path`` and return it open; see the module docstring."""
    from embridge.core.embed import embed_items
    from embridge.core.importers import import_items
    from embridge.core.models import describe_model

    report = on_progress or no_progress
    steps = 6
    ws = start_demo(path, "digits")
    try:
        images, labels = load_digits()
        order = np.random.default_rng(seed).permutation(len(labels))
        train_idx = order[:EMBEDDER_TRAIN]
        gallery_idx = order[EMBEDDER_TRAIN:EMBEDDER_TRAIN + GALLERY]
        query_idx = order[EMBEDDER_TRAIN + GALLERY:EMBEDDER_TRAIN + GALLERY + QUERIES]

        report(0, steps, {"stage": "writing images"})
        items_root = ws.root / "demo-items"
        _write_pngs(items_root / "gallery", images, labels, gallery_idx)
        _write_pngs(items_root / "query", images, labels, query_idx)
        import_items(ws, items_root / "gallery", "images", split="gallery")
        import_items(ws, items_root / "query", "images", split="query")
        check_stop(should_stop)

        report(1, steps, {"stage": "training the old and new models"})
        old, new = train_demo_models(images[train_idx], labels[train_idx], seed)
        check_stop(should_stop)

        report(2, steps, {"stage": "adding the models"})
        with tempfile.TemporaryDirectory() as tmp:
            for name, module, role in (("old-mlp", old, "old"), ("new-cnn", new, "new")):
                file = Path(tmp) / f"{name}.pt"
                _save_torchscript(module, file)
                spec = describe_model(file, kind="torchscript", name=name, input_shape=(1, 8, 8))
                ws.add_model(name, role, spec.to_dict(), file)

        report(3, steps, {"stage": "embedding the gallery with the old model"})
        gallery_ids, query_ids = ws.gallery_ids(), ws.query_ids()
        embed_items(ws, "old-mlp", np.concatenate([gallery_ids, query_ids]), device="cpu",
                    should_stop=should_stop)
        report(4, steps, {"stage": "embedding the evaluation sample with the new model"})
        sample = np.sort(np.random.default_rng(seed + 2).choice(gallery_ids, EVAL_SAMPLE, replace=False))
        embed_items(ws, "new-cnn", np.concatenate([sample, query_ids]), device="cpu", should_stop=should_stop)
        report(steps, steps, {"stage": "done"})
    except BaseException:
        abandon_demo(ws)
        raise
    finish_demo(ws)
    return ws
