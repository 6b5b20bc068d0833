"""One sentence per training setting: the app's tooltips and the CLI's help read these."""

from __future__ import annotations

SETTING_HELP: dict[str, str] = {
    "epochs": "Most passes over the training pairs; training may stop earlier (see patience).",
    "batch_size": "Training pairs per optimisation step.",
    "lr": "Learning rate of the AdamW optimiser (cosine-decayed to zero over the epochs).",
    "weight_decay": "AdamW weight decay: pulls the layer's weights towards zero.",
    "loss": "How mapped new vectors are pulled to old ones: mse, cosine, contrastive (in-batch negatives), or "
            "retrieval (each item must retrieve its own old vector among the old gallery; lowrank's and mlp's "
            "default).",
    "temperature": "Softness of the contrastive loss; smaller values punish near misses harder.",
    "patience": "Stop early after this many epochs without a better validation score; the best epoch is kept.",
    "seed": "Seed of the training (initialisation and batch order: same seed, same result), and of the "
            "train/validation/test folds of items that have none yet: folds are drawn once, by the first run that "
            "pairs the items, and kept, so every run is measured on the same test items.",
    "device": "Where to train: auto picks a GPU when there is one.",
    "amp": "Mixed precision on a GPU (faster, same results within rounding); ignored on the CPU.",
    "candidates": "Methods the automatic choice fits; the best on validation wins.",
    "rank": "Rank of the low-rank map (smaller: fewer parameters, less over-fitting).",
    "hidden": "Width of the MLP's hidden layer.",
    "ridge_grid": "Ridge strengths tried for the closed-form fit; the best on validation is kept.",
    "shrink_grid": "Covariance shrinkage values tried when whitening; the best on validation is kept.",
    "alpha_grid": "Fusion weights of old and mapped new query tried; the best on validation is kept.",
    "whiten": "Whiten both spaces before the orthogonal fit (helps when the spaces are anisotropic).",
    "diagonal": "Add a learned per-dimension scale of the input to the low-rank map (when the old and new "
                "dims are equal).",
    "base": "The layer fusion combines with the old query vector.",
    "rerank_new_vectors": "Cascade: re-rank recalled items by their served new vectors (a backfill's, or every "
                          "item's when the new model embedded the whole gallery; never an evaluation sample's "
                          "alone) instead of through the layer alone.",
    "align_weight": "Weight of the cosine term that pulls each item's output toward its own old vector (bct; bt2's old part).",
    "influence_weight": "Weight of the old classifier's loss on new vectors (backward-compatible training).",
    "logit_scale": "Scale of the classifier logits in the compatibility loss.",
    "extra_dims": "Extra dimensions the head adds to the new model's (at least old minus new dimensions: "
                  "raised to that when the old model is wider).",
    "time_budget": "Automatic choice only: closed forms run first, then the trained layers, then fusion and cascade "
                   "over them; once this many seconds of fitting are spent the rest are skipped, and a training "
                   "candidate stops at the end of its epoch (reading the pairs and the held-out scoring come on top).",
}


def setting_help(key: str) -> str:
    return SETTING_HELP.get(key, key.replace("_", " "))
