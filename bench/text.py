"""Text embedding: Embridge's embed loop against a bare loop over the same tiny text model.

A two-layer BERT (hidden 64) is built from random weights with a written vocabulary and saved three
ways: a sentence-transformers folder, a plain transformers folder and an ONNX export. The corpus is
seeded random word sequences of 3 to 80 words, so lengths vary as in real documents. Measured:
``embridge.core.embed.embed_array`` (tokenize once, sort by token length, pad per batch, pool) and
``embridge.core.embed.embed_items`` (the same through a workspace: items read from SQLite, vectors written
in resumable chunks). Floors, same run, same texts, batch 64: ``SentenceTransformer.encode`` (which
sorts by length itself), and for the transformers and ONNX folders a bare loop of tokenizer(padding)
+ forward + mean pooling in corpus order. Target: >= 0.9x the bare loop's items/s.
"""

from __future__ import annotations

import json
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import Row, Target, area_result, paired_times

AT_LEAST = Target("ratio_min", 0.9, ">= 0.9x bare loop")
BATCH = 64
WORDS = ("the cat sat on a mat dog ran in park bird sang tree fox jumped over lazy river flows to sea old man boat "
         "fish green hill under sky rain fell city night light wind cold winter summer long road home").split()


def corpus(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 81)))) for _ in range(n)]


def build_models(root: Path) -> dict[str, Path]:
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    hf = root / "bert"
    hf.mkdir()
    (hf / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(hf / "vocab.txt"))
    config = BertConfig(vocab_size=len(WORDS) + 5, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, max_position_embeddings=128)
    torch.manual_seed(0)
    model = BertModel(config).eval()
    model.save_pretrained(str(hf))
    tokenizer.save_pretrained(str(hf))
    st = root / "st"
    transformer = models.Transformer(str(hf))
    SentenceTransformer(modules=[transformer, models.Pooling(64, "mean")], device="cpu").save(str(st))
    onnx = root / "onnx"
    tokenizer.save_pretrained(str(onnx))

    class LastHidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    ids = torch.tensor([[2, 8, 9, 3], [2, 8, 3, 0]])
    axes = {0: "batch", 1: "tokens"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(LastHidden(), (ids, (ids != 0).long()), str(onnx / "model.onnx"), dynamo=False,
                          opset_version=17, input_names=["input_ids", "attention_mask"],
                          output_names=["last_hidden_state"],
                          dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes})
    return {"sentence_transformers": st, "transformers": hf, "onnx": onnx}


def bare_loop(kind: str, folder: Path, texts: list[str]) -> Any:
    """The loop a user would write: batches in corpus order, padded, forward, mean pooling."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if kind == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])

        def run() -> np.ndarray:
            out = []
            for start in range(0, len(texts), BATCH):
                enc = tokenizer(texts[start:start + BATCH], padding=True, return_tensors="np")
                mask = enc["attention_mask"].astype(np.int64)
                (hidden,) = session.run(None, {"input_ids": enc["input_ids"].astype(np.int64),
                                               "attention_mask": mask})
                out.append((hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True))
            return np.concatenate(out)
        return run
    model = AutoModel.from_pretrained(str(folder)).eval()

    def run_torch() -> np.ndarray:
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), BATCH):
                enc = tokenizer(texts[start:start + BATCH], padding=True, return_tensors="pt")
                hidden = model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).float()
                out.append(((hidden * mask).sum(1) / mask.sum(1)).numpy())
        return np.concatenate(out)
    return run_torch


def run(tiny: bool, device: str, seed: int = 0) -> dict[str, Any]:
    from sentence_transformers import SentenceTransformer

    from embridge.core.embed import embed_array, embed_items
    from embridge.core.importers import import_items
    from embridge.core.models import describe_model, load_model
    from embridge.core.store import Workspace

    started = time.time()
    n = 256 if tiny else 2_048
    repeats = 2 if tiny else 3
    texts = corpus(n, seed)
    rows: list[Row] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folders = build_models(root)
        for kind, folder in folders.items():
            loaded = load_model(folder, "cpu")
            if kind == "sentence_transformers":
                st = SentenceTransformer(str(folder), device="cpu")
                floor: Any = lambda st=st: st.encode(texts, batch_size=BATCH, show_progress_bar=False)  # noqa: E731
                floor_name = "SentenceTransformer.encode"
            else:
                floor, floor_name = bare_loop(kind, folder, texts), "bare tokenizer + forward loop"
            ours = embed_array(loaded, texts, batch_size=BATCH, device="cpu")
            gap = float(np.abs(ours - np.asarray(floor(), dtype=np.float32)).max())
            m, f = paired_times(lambda lo=loaded: embed_array(lo, texts, batch_size=BATCH, device="cpu"), floor,
                                repeats)
            rows.append(Row(f"{kind} folder, embed_array", "items/s", n / min(m), n / min(f), floor_name,
                            AT_LEAST, note=f"max |difference| {gap:.1e}", details={"texts": n, "batch": BATCH}))
        # The same through a workspace: item reads and chunked vector writes included. A fresh workspace for
        # each repeat, made before the clock starts: items that already hold the model's vectors are not embedded
        # again, so a second embed into the same workspace would time nothing
        file = root / "corpus.jsonl"
        file.write_text("".join(json.dumps({"key": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
        spec = describe_model(folders["transformers"], name="bert")
        spaces = []
        for k in range(max(1, repeats)):
            ws = Workspace.create(root / f"ws{k}")
            import_items(ws, file, "jsonl", split="gallery")
            ws.add_model("bert", "old", spec.to_dict(), folders["transformers"])
            spaces.append((ws, ws.item_ids()))
        fresh = iter(spaces)

        def embed_fresh() -> Any:
            ws, ids = next(fresh)
            info = embed_items(ws, "bert", ids, batch_size=BATCH, device="cpu", resume=False)
            if not info.get("written"):  # nothing was embedded: the row would time a lookup
                raise RuntimeError("embed_items embedded nothing in a fresh workspace")
            return info

        bare = bare_loop("transformers", folders["transformers"], texts)
        m, f = paired_times(embed_fresh, bare, repeats)
        for ws, _ in spaces:
            ws.close()
        rows.append(Row("transformers folder, embed_items (workspace)", "items/s", n / min(m), n / min(f),
                        "bare tokenizer + forward loop", AT_LEAST, details={"texts": n, "batch": BATCH}))
    notes.append("Embridge sorts each chunk by token length before batching, so it pads less than a loop over "
                 "batches in corpus order; sentence-transformers sorts by characters itself, so that row "
                 "compares like with like.")
    return area_result("text", rows, {"texts": n, "batch": BATCH, "repeats": repeats}, notes, started, device)
