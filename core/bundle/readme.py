"""The deployment note written into every bundle as ``README.md``, derived from its manifest."""

from __future__ import annotations

import json
from typing import Any

from embridge.core.bundle.measured import chain_step_lines, measured_lines, renamed_line, verdict_line
from embridge.core.cascade_rerank import reranks_by_new_vectors


def _usage(manifest: dict[str, Any]) -> list[str]:
    adapter = manifest["adapter"]
    norm_in = manifest["normalisation"]["input"] == "l2"
    x = "F.normalize(x.float(), dim=-1)" if norm_in else "x.float()"  # float64 rows fail in TorchScript
    if adapter["inputs"] == ["new", "old"]:
        call = f"m({x}, old_query.float())"
    else:
        call = f"m({x})"
    return ["import torch, torch.nn.functional as F",
            'm = torch.jit.load("adapter.pt").eval()', *_old_query_note(manifest, "tensor "),
            "with torch.no_grad():  # y.numpy() needs a tensor that tracks no gradients",
            f"    y = F.normalize({call}, dim=-1)  # x: a tensor (n, {adapter['in_dim']})"]


def _old_query_note(manifest: dict[str, Any], kind: str = "") -> list[str]:
    """A fusion's second input, said where a snippet first needs it: what it is, its width and type."""
    if manifest["adapter"]["inputs"] != ["new", "old"]:
        return []
    return [f"# old_query: float32 {kind}(n, {manifest['adapter']['out_dim']}), the old model's vectors of the "
            "same queries as x, row for row"]


# rows to unit length as `bundle apply` makes them: each row first divided by its largest magnitude, so
# rows of 1e-14 or 1e20 (whose float32 squared length underflows or overflows) keep their direction
UNIT_DEF = ("def unit(v):  # float32 rows to unit length at any scale, as `embridge bundle apply`; zero rows stay zero",
            "    v = np.asarray(v, dtype=np.float32)",
            "    v = v / np.maximum(np.abs(v).max(axis=1, keepdims=True), np.finfo(np.float32).tiny)",
            "    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), np.finfo(np.float32).tiny)")


def _portable_usage(manifest: dict[str, Any]) -> tuple[str, list[str]]:
    """(heading, lines) of the torch-free deploy snippet: numpy for linear layers, onnxruntime else."""
    entry = manifest.get("portable") or {}
    norm = manifest["normalisation"]["input"] == "l2"
    fusion = manifest["adapter"]["inputs"] == ["new", "old"]
    unit = UNIT_DEF
    x = "unit(x)" if norm else "np.asarray(x, np.float32)"  # float64 rows: onnxruntime refuses them
    if entry.get("runtime") == "numpy":
        body = ["import numpy as np",
                "from safetensors.numpy import load_file",
                'p = load_file("adapter.safetensors")', *unit, *_old_query_note(manifest),
                f"y = {x} @ p[\"weight\"] + p[\"bias\"]  # x: float32 (n, {manifest['adapter']['in_dim']})"]
        if fusion:
            body.append('y = p["alpha"][0] * unit(old_query) + (1 - p["alpha"][0]) * unit(y)')
        return "## Use with numpy and safetensors (no torch)", [*body, "y = unit(y)"]
    feed = '{"x": ' + x + (', "old": np.asarray(old_query, np.float32)}' if fusion else "}")
    return "## Use with onnxruntime only", [
        "import numpy as np, onnxruntime as ort", *unit,
        'session = ort.InferenceSession("adapter.onnx", providers=["CPUExecutionProvider"])',
        *_old_query_note(manifest),
        f"y = unit(session.run(None, {feed})[0])  # x: float32 (n, {manifest['adapter']['in_dim']})"]


def cascade_k(manifest: dict[str, Any]) -> int | None:
    """A cascade's re-rank depth K, or None when the bundle's layer is not served as a cascade."""
    method = manifest["adapter"].get("method") or {}
    return int(method["k"]) if method.get("kind") == "cascade" and isinstance(method.get("k"), int) else None


def cascade_uses_new_vectors(manifest: dict[str, Any]) -> bool:
    """Whether the cascade was measured re-ranking by stored new vectors (bundles before the field: yes)."""
    return reranks_by_new_vectors(manifest["adapter"].get("method"))


def _layer_line(manifest: dict[str, Any]) -> str:
    """The serving snippet's ``layer`` in the bundle's torch-free runtime, inputs normalised as measured."""
    x = "unit(q)" if manifest["normalisation"]["input"] == "l2" else "np.asarray(q, np.float32)"
    if (manifest.get("portable") or {}).get("runtime") == "numpy":
        return f'layer = lambda q: unit({x} @ p["weight"] + p["bias"])  # the layer above'
    return f'layer = lambda q: unit(session.run(None, {{"x": {x}}})[0])  # the layer above'


def _cascade_section(manifest: dict[str, Any], k: int) -> list[str]:
    """How a cascade is served: the old index recalls K, the new query re-ranks them (as measured: by
    stored new vectors where the gallery has them, or through the layer alone)."""
    by_new = cascade_uses_new_vectors(manifest)
    if by_new:
        step = ("**new** model's query: against the item's new vector where the gallery already has one, else "
                "`layer(new query)` against the item's old vector")
        answer = "answer. Both encoders embed every query during the transition."
        signature, how = "old_gallery, new_gallery=None, has_new=None, k=K", "by the new model"
    else:
        step = "`layer(new query)` against the item's old vector"
        answer = ("answer. No item's new vector was used, so nothing of the gallery needs re-embedding; both "
                  "encoders embed every query during the transition.")
        signature, how = "old_gallery, k=K", "through the layer"
    lines = [f"## Serve it as a cascade (K = {k})", "",
             f"This is how the numbers below were measured. Per query: (1) today's search, the **old** model's "
             f"query against the old index, recalls the top {k} items; (2) each of those {k} is re-scored by "
             f"{'the ' if by_new else ''}{step}; (3) the re-scored items, best first, are the {answer} Do not "
             "search the whole old gallery with `layer(new query)` alone: that is not the system measured here "
             "and can rank worse than today's search.", "",
             "```python", _layer_line(manifest), f"K = {k}",
             f"def cascade_search(old_q, new_q, {signature}):",
             f'    """Gallery rows per query, best first: the old index\'s top k re-ranked {how}."""',
             "    og = unit(old_gallery)",
             "    # stage one: today's search (your old index's top k for the old query)",
             "    recalled = np.argsort(-(unit(old_q) @ og.T), axis=1, kind=\"stable\")[:, :k]",
             "    scores = np.einsum(\"qd,qkd->qk\", layer(new_q), og[recalled])"]
    if by_new:
        lines += ["    if new_gallery is not None:  # re-embedded items: the new query against their new vector",
                  "        direct = np.einsum(\"qd,qkd->qk\", unit(new_q), unit(new_gallery)[recalled])",
                  "        scores = np.where(has_new[recalled], direct, scores)"]
    return lines + ["    order = np.argsort(-scores, axis=1, kind=\"stable\")",
                    "    return np.take_along_axis(recalled, order, axis=1)",
                    "```", "",
                    "`old_q`, `new_q`: the same queries embedded by the old and the new model"
                    + ("; `new_gallery`: the new model's vectors in gallery row order, `has_new[j]` true where row j "
                       "has one." if by_new else "."), ""]


def _purpose(manifest: dict[str, Any]) -> str:
    adapter, models = manifest["adapter"], manifest["models"]
    old, new = models["old"]["name"], models["new"]["name"]
    k = cascade_k(manifest)
    if k is not None and not cascade_uses_new_vectors(manifest):
        return (f"It is served as a **cascade**: the existing **{old}** index recalls the top {k} items for the "
                f"old query and **{new}** (new) re-ranks them through the layer in this bundle, which maps new "
                f"queries into the **{old}** space; no gallery item is re-embedded. Serve it as described "
                "under \"Serve it as a cascade\"; the layer alone is not the measured system.")
    if k is not None:
        return (f"It is served as a **cascade**: the existing **{old}** index recalls the top {k} items for the "
                f"old query and **{new}** (new) re-ranks them; the layer in this bundle maps new queries into "
                f"the **{old}** space for recalled items that have no new vector yet. Serve it as described "
                "under \"Serve it as a cascade\"; the layer alone is not the measured system.")
    if adapter["direction"] == "forward":
        return (f"It maps vectors of the old model **{old}** into the space of the new model **{new}**: "
                "transform the stored gallery once, then search it with new-model queries.")
    if adapter["inputs"] == ["new", "old"]:
        return (f"It fuses a query embedded by both **{new}** (new) and **{old}** (old) into one vector "
                f"that searches the existing **{old}** gallery unchanged.")
    purpose = (f"It maps query vectors of the new model **{new}** into the space of the old model **{old}**, "
               f"so they search the existing **{old}** gallery without re-embedding it.")
    head_dim = (adapter.get("method") or {}).get("head_dim") if adapter["kind"] == "bt2" else None
    if head_dim:
        purpose += (f" The layer is the first {adapter['out_dim']} of a BT² head's {head_dim} output dims (the "
                    "old-compatible part); the head/head numbers below (the ceiling) use all of them on queries and "
                    "gallery alike, which only a full backfill through the whole head reaches, not this layer.")
    return purpose


POOLING_WORDS = {"mean": "the mean of its token states (padding left out)", "cls": "its first token's state",
                 "last": "its last (non-padding) token's state"}


def prompt_notes(models: dict[str, Any]) -> list[str]:
    """One line per text model that embeds with prompts or a pooling Embridge applies: queries and documents
    must be embedded alike (a library's default pooling may differ, and nothing would say so)."""
    notes = []
    for role in ("old", "new"):
        entry = models.get(role) or {}
        spec = entry.get("spec") or {}
        parts = [f"{what} as {_code(json.dumps(str(spec[key]), ensure_ascii=False) + ' + text')}"
                 for what, key in (("queries", "query_prompt"), ("documents", "document_prompt")) if spec.get(key)]
        said = f"embeds {' and '.join(parts)}" if parts else ""
        if spec.get("pooling") in POOLING_WORDS:
            said += ("; it " if said else "") + (f"pools by {spec['pooling']}: a text's vector is "
                                                 f"{POOLING_WORDS[spec['pooling']]}")
        if said:
            notes.append(f"The {role} model **{entry.get('name')}** {said}; embed new texts the same way (the "
                         f"prompts and pooling are in `manifest.json`, models.{role}.spec).")
    return notes


def _code(text: str) -> str:
    """``text`` as a markdown code span (a prompt's own backticks would end a single-backtick span)."""
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _bad_rows_note(manifest: dict[str, Any]) -> str:
    """What the snippet does not check and `bundle apply` refuses: rows it would pass through silently."""
    zero = (" and all-zero rows (an empty or failed embedding: it has no direction, and the layer would "
            "answer it with its bias alone)" if manifest["normalisation"]["input"] == "l2" else "")
    return (f"Drop rows holding NaN or infinity{zero} before the snippet: `embridge bundle apply` refuses them, "
            "naming the row, where the snippet passes them through.")


def _runtime_sections(manifest: dict[str, Any]) -> list[str]:
    lines = []
    if manifest.get("portable"):
        heading, body = _portable_usage(manifest)
        entry = manifest["portable"]
        check = entry.get("export_check") or {}
        lines += [heading, "", "```python", *body, "```", "", _bad_rows_note(manifest), "",
                  f"`{entry['file']}` holds the layer's tensors ({', '.join(entry.get('tensors', []))}); "
                  f"the function is `{entry['formula']}`. At export it matched the torch layer on the "
                  f"{check.get('count')} probe vectors to a max abs difference of {check.get('max_abs_diff', 0):.3g} "
                  f"(tolerance rtol={check.get('rtol')}, atol={check.get('atol')}).", ""]
    lines += ["## Use with torch", "", "```python", *_usage(manifest), "```", ""]
    k = cascade_k(manifest)
    return lines + (_cascade_section(manifest, k) if k is not None else [])


def readme_text(manifest: dict[str, Any]) -> str:
    adapter = manifest["adapter"]
    warning = verdict_line(manifest)  # stated before anything a deployer would copy
    lines = [f"# Embridge upgrade bundle: {adapter['kind']} ({adapter['direction']})", "",
             *([f"**{warning}.**", ""] if warning else []),
             *([f"Note: the numbers below were {manifest['measured_before_changes']}.", ""]
               if manifest.get("measured_before_changes") else []),
             _purpose(manifest), "", *[f"{n}\n" for n in prompt_notes(manifest["models"])],
             *_runtime_sections(manifest)]
    if manifest["normalisation"]["input"] == "l2":
        lines.append("Inputs are L2-normalised before the layer, as in training; outputs are L2-normalised "
                     "for cosine / inner-product search. The torch-free snippets' `unit` divides each row by "
                     "its largest magnitude first, as `embridge bundle apply` does; `F.normalize` does not: rows "
                     "with values above about 1e19 overflow it (their squared length is infinite in float32) and "
                     "come out as zeros, and rows below about 1e-12 are not scaled up, so divide such rows by "
                     "their largest magnitude first (`x / x.abs().amax(-1, keepdim=True)`).")
    else:
        lines.append("Inputs are the model's vectors as stored (no normalisation); outputs are L2-normalised "
                     "for cosine / inner-product search.")
    lines.append("Every number here was measured by cosine similarity: all vectors, the old gallery's included, "
                 "L2-normalised. An old index ranked by raw inner product over vectors of varying length "
                 "(lengths that carry popularity, say) ranks differently: normalise its vectors before serving "
                 "this layer against it, or measure on the index as it is.")
    if len(manifest.get("chain", [])) > 1:
        steps = " then ".join(f"{s['new_model'] if s['direction'] != 'forward' else s['old_model']} -> "
                              f"{s['old_model'] if s['direction'] != 'forward' else s['new_model']} ({s['kind']})"
                              for s in manifest["chain"])
        lines += ["", f"This bundle chains {len(manifest['chain'])} layers: {steps}."]
    if manifest.get("gallery_transformed"):
        g = manifest["gallery_transformed"]
        lines += ["", f"`{g['vectors']}` holds the {g['count']} gallery vectors already transformed "
                  f"(row i belongs to item `{g['keys']}`[i]"
                  + (f", the workspace's item id `{g['ids']}`[i]" if g.get("ids") else "")
                  + "); they are not normalised: L2-normalise each row before you index it, as `bundle apply` "
                  "does for the rows it writes (a search by inner product of raw rows ranks longer vectors "
                  "higher)."]
    measured = measured_lines(manifest) + chain_step_lines(manifest)
    renamed = renamed_line(manifest)
    if renamed:
        lines += ["", f"{renamed}."]
    if measured:
        served = f", served as the cascade above (K = {cascade_k(manifest)})" if cascade_k(manifest) else ""
        lines += ["", f"Quality of this upgrade{served}, each number with the queries and gallery it was "
                  "measured on:", "", *[f"- {line}." for line in measured]]
    lines += ["", "## Check before use", "",
              "`embridge bundle verify <bundle>` checks every file's sha256 (`CHECKSUMS` lists each "
              "file's, `manifest.json` included) and re-runs the layer on `probes/`. "
              "Without Embridge: `sha256sum -c CHECKSUMS` in the bundle folder. Unpack a zipped bundle into a "
              "folder of its own (`unzip upgrade.zip -d upgrade`) and keep other files out of it: `verify` and "
              "`apply` refuse a bundle folder holding a file its manifest does not list.",
              f"`embridge bundle apply <bundle> --vectors in.npy{_old_vectors_flag(manifest)} --out out.npy` "
              "transforms a large vector file in resumable chunks; `--runtime auto` (default) uses the "
              "torch-free runtime above, so torch need not be installed.", ""]
    return "\n".join(lines)


def _old_vectors_flag(manifest: dict[str, Any]) -> str:
    """A fusion layer reads each query's old-model vector too: its apply command names the file holding them."""
    adapter = manifest.get("adapter") if isinstance(manifest.get("adapter"), dict) else {}
    return " --old-vectors old_queries.npy" if adapter.get("inputs") == ["new", "old"] else ""
