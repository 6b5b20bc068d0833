"""The text demo: finding a Bible verse from its wording in another translation.

Documents are verses of the King James Version (KJV, 1611/1769) from eight books; queries are the
same verses in Young's Literal Translation (YLT, 1862), whose wording differs ("Trust unto Jehovah
with all thy heart" for "Trust in the LORD with all thine heart"). Each query's one relevant
document is its own verse, so the judgments are exact by construction. Both texts are public
domain; ``resources/demo/BIBLE-TEXT-LICENSE.md`` says where they come from.

The bundled data is written as a BEIR folder (``corpus.jsonl``, ``queries.jsonl``,
``qrels/{train,dev,test}.tsv``) and imported through :func:`embridge.core.beir_import.import_beir`, the path
a user's own BEIR data takes. Two text encoders are trained here in seconds with a fixed seed on
verse pairs of four other books (never the demo's): an **old** one (32-d, a vocabulary of Genesis
only, one epoch) and a **new**, better one (64-d, all four books, more epochs) that embeds queries
with the prompt "query: ". Both are bags of word vectors with mean pooling and L2 normalisation,
saved as sentence-transformers folders (standard modules only) and added as files, so the demo
exercises the same loading, prompt and embedding paths as a user's model. The documents are the
corpus verses in which each encoder knows a word: every stored document vector has a direction.
"""

from __future__ import annotations

import gzip
import json
import string
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embridge.core.demo_workspace import abandon_demo, finish_demo, start_demo
from embridge.core.errors import InputError
from embridge.core.extras import install_hint
from embridge.core.progress import ProgressFn, StopFn, check_stop, no_progress
from embridge.core.store import Workspace

DATA_FILE = Path(__file__).resolve().parent.parent / "resources" / "demo" / "bible-kjv-ylt.jsonl.gz"
QUERY_SPLITS = (("train", 300), ("dev", 100), ("test", 200))
QUERY_PROMPT = "query: "
OLD_MODEL, NEW_MODEL = "old-bow", "new-bow"


@dataclass(frozen=True)
class Verse:
    ref: str
    book: str
    kjv: str
    ylt: str
    use: str  # "corpus" (searched) or "encoder" (only trains the demo encoders)

    @property
    def doc_id(self) -> str:
        return self.ref.replace(" ", "_")


@dataclass(frozen=True)
class EncoderRecipe:
    """How one demo encoder is trained: its width, which books give its vocabulary and pairs, epochs."""

    dim: int
    books: tuple[str, ...]
    epochs: int
    prompt: str = ""


QUERY_STREAM = 0x71756572  # which verses become queries: drawn apart from the folds (see write_beir_folder)
OLD_RECIPE = EncoderRecipe(dim=32, books=("Genesis",), epochs=1)
NEW_RECIPE = EncoderRecipe(dim=64, books=("Genesis", "Psalms", "Matthew", "Luke"), epochs=6, prompt=QUERY_PROMPT)


def load_verses(path: Path = DATA_FILE) -> list[Verse]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [Verse(**json.loads(line)) for line in handle if line.strip()]


def write_beir_folder(root: Path, verses: list[Verse], seed: int,
                      keep: Callable[[Verse], bool] | None = None) -> dict[str, int]:
    """The corpus verses (those ``keep`` accepts) as a BEIR folder: KJV documents, YLT queries (seeded
    sample), one judgment each."""
    corpus = [v for v in verses if v.use == "corpus" and (keep is None or keep(v))]
    # a stream of its own: the train fold is a default_rng(seed) permutation of as many gallery items, in
    # corpus order, so the same draw here put every judged document (each query's answer) in the train fold
    order = np.random.default_rng([seed, QUERY_STREAM]).permutation(len(corpus))
    root.mkdir(parents=True, exist_ok=True)
    (root / "qrels").mkdir(exist_ok=True)
    with (root / "corpus.jsonl").open("w", encoding="utf-8") as out:
        for v in corpus:
            out.write(json.dumps({"_id": v.doc_id, "title": "", "text": v.kjv}, ensure_ascii=False) + "\n")
    counts, start = {}, 0
    with (root / "queries.jsonl").open("w", encoding="utf-8") as out:
        for split, size in QUERY_SPLITS:
            chosen = [corpus[i] for i in order[start:start + size]]
            start += size
            with (root / "qrels" / f"{split}.tsv").open("w", encoding="utf-8") as qrels:
                qrels.write("query-id\tcorpus-id\tscore\n")
                for v in chosen:
                    out.write(json.dumps({"_id": f"q-{v.doc_id}", "text": v.ylt}, ensure_ascii=False) + "\n")
                    qrels.write(f"q-{v.doc_id}\t{v.doc_id}\t1\n")
            counts[split] = len(chosen)
    counts["documents"] = len(corpus)
    return counts


def _words(text: str) -> list[str]:
    return [w for w in (t.strip(string.punctuation) for t in text.lower().split()) if w]


def every_encoder_reads(tokenizers: list[Any]) -> Callable[[Verse], bool]:
    """Whether each demo encoder finds a word it knows in a verse's document text. A bag of words gives
    a text with none an all-zero vector, which no search finds and no layer can carry (bundles and
    migrations refuse it): the old encoder knows only Genesis's words, and a verse of other books made
    only of names would be such a document."""
    return lambda verse: all(tokenizer.tokenize(verse.kjv) for tokenizer in tokenizers)


def st_modules() -> Any:
    """sentence-transformers' module classes (Transformer, Pooling, Normalize), where this version keeps them."""
    try:
        from sentence_transformers.sentence_transformer import modules
    except ImportError:  # sentence-transformers before 5
        from sentence_transformers import models as modules
    return modules


def whitespace_tokenizer(vocab: list[str]) -> Any:
    """sentence-transformers' whitespace tokenizer of ``vocab`` (lower case, its English stop words dropped)."""
    tokenizer_module = getattr(st_modules(), "tokenizer", None)
    if tokenizer_module is None:  # sentence-transformers before 5
        from sentence_transformers.models import tokenizer as tokenizer_module
    return tokenizer_module.WhitespaceTokenizer(vocab, do_lower_case=True)


def train_encoder(verses: list[Verse], recipe: EncoderRecipe, seed: int) -> tuple[Any, np.ndarray]:
    """(tokenizer, word vectors): in-batch contrastive training of a mean bag of words, YLT -> KJV."""
    import torch

    pairs = [v for v in verses if v.use == "encoder" and v.book in recipe.books]
    vocab = sorted({w for v in pairs for w in _words(v.kjv) + _words(v.ylt)} | set(_words(recipe.prompt)))
    tokenizer = whitespace_tokenizer(vocab)
    queries = [tokenizer.tokenize(recipe.prompt + v.ylt) for v in pairs]
    docs = [tokenizer.tokenize(v.kjv) for v in pairs]
    keep = [i for i in range(len(pairs)) if queries[i] and docs[i]]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small only waits on a second thread
    try:
        return tokenizer, _fit_bag(queries, docs, keep, len(vocab), recipe, seed)
    finally:
        torch.set_num_threads(threads)


def _fit_bag(queries: list[list[int]], docs: list[list[int]], keep: list[int], size: int, recipe: EncoderRecipe,
             seed: int) -> np.ndarray:
    import torch

    torch.manual_seed(seed)
    bag = torch.nn.EmbeddingBag(size, recipe.dim, mode="mean")
    optimiser = torch.optim.Adam(bag.parameters(), lr=0.02)
    gen = torch.Generator().manual_seed(seed)

    def embed(rows: list[list[int]]) -> torch.Tensor:
        flat = torch.tensor([t for r in rows for t in r], dtype=torch.long)
        offsets = torch.tensor(np.cumsum([0] + [len(r) for r in rows[:-1]]), dtype=torch.long)
        return torch.nn.functional.normalize(bag(flat, offsets), dim=1)

    for _ in range(recipe.epochs):
        for batch in torch.randperm(len(keep), generator=gen).split(128):
            idx = [keep[int(i)] for i in batch]
            logits = embed([queries[i] for i in idx]) @ embed([docs[i] for i in idx]).T / 0.05
            target = torch.arange(len(idx))
            loss = torch.nn.functional.cross_entropy(logits, target) + \
                torch.nn.functional.cross_entropy(logits.T, target)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return bag.weight.detach().numpy().astype(np.float32)


def save_encoder(folder: Path, tokenizer: Any, weights: np.ndarray, prompt: str) -> Path:
    """A sentence-transformers folder: word embeddings, mean pooling, normalisation, its query prompt."""
    from sentence_transformers import SentenceTransformer

    modules = st_modules()
    layers = [modules.WordEmbeddings(tokenizer, weights), modules.Pooling(weights.shape[1], "mean"),
              modules.Normalize()]
    SentenceTransformer(modules=layers, device="cpu", prompts={"query": prompt} if prompt else None).save(str(folder))
    for config in folder.rglob("whitespacetokenizer_config.json"):  # its stop words are a set, saved in hash
        data = json.loads(config.read_text(encoding="utf-8"))      # order: sorted, a seed gives the same bytes
        if isinstance(data.get("stop_words"), list):
            data["stop_words"] = sorted(data["stop_words"])
            config.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return folder


def text_demo_problem() -> str | None:
    """Why the text demo cannot be built here (its encoders are sentence-transformers folders), or None."""
    from embridge.core.extras import installed  # found without importing torch: the Workspace page asks

    if installed("sentence_transformers"):
        return None
    return f"the text demo needs the text extra (sentence-transformers); {install_hint('text')}"


def _require_text_extra() -> None:
    problem = text_demo_problem()
    if problem is not None:
        raise InputError("--kind text", problem)


def build_text_demo(path: str | Path, seed: int = 0, on_progress: ProgressFn | None = None,
                    should_stop: StopFn | None = None) -> Workspace:
    """Create the text demo workspace at ``path`` and return it open; see the module docstring."""
    from embridge.core.beir_import import import_beir
    from embridge.core.embed import embed_items
    from embridge.core.models import describe_model

    _require_text_extra()
    report = on_progress or no_progress
    steps = 5
    ws = start_demo(path, "text")
    try:
        verses = load_verses()
        with tempfile.TemporaryDirectory() as tmp:
            report(0, steps, {"stage": "training the old and new text encoders"})
            folders, tokenizers = [], []
            for name, recipe, offset in ((OLD_MODEL, OLD_RECIPE, 0), (NEW_MODEL, NEW_RECIPE, 1)):
                tokenizer, weights = train_encoder(verses, recipe, seed + offset)
                folders.append(save_encoder(Path(tmp) / name, tokenizer, weights, recipe.prompt))
                tokenizers.append(tokenizer)
                check_stop(should_stop)
            report(1, steps, {"stage": "importing the verses (BEIR folder)"})
            write_beir_folder(Path(tmp) / "beir", verses, seed, keep=every_encoder_reads(tokenizers))
            import_beir(ws, Path(tmp) / "beir", should_stop=should_stop)
            check_stop(should_stop)
            for name, role, folder in ((OLD_MODEL, "old", folders[0]), (NEW_MODEL, "new", folders[1])):
                ws.add_model(name, role, describe_model(folder, name=name).to_dict(), folder)
        all_ids = ws.item_ids()
        report(2, steps, {"stage": "embedding documents and queries with the old model"})
        embed_items(ws, OLD_MODEL, all_ids, device="cpu", should_stop=should_stop)
        report(3, steps, {"stage": "embedding documents and queries with the new model"})
        embed_items(ws, NEW_MODEL, all_ids, device="cpu", should_stop=should_stop)
        report(steps, steps, {"stage": "done"})
    except BaseException:
        abandon_demo(ws)
        raise
    finish_demo(ws)
    return ws
