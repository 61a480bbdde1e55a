"""Query-augmentation fusion (docs/design.md §4, §9): one definition used by RLRF scoring and inference.

    fused(q, g) = (1 − w) · E_q(q) + w · E_aug(PREFIX + g),   w = 0.2 by default

The reference does not re-normalise the result and scores with a plain dot product; neither do we.
With several augmentations per query, their embeddings are averaged first.
"""
from __future__ import annotations

import numpy as np

DEFAULT_AUGMENTATION_WEIGHT = 0.2
# The reference encodes the augmentation as a passage (no query instruction) at inference and in stage D,
# but as a query in stage B (docs/design.md §10.9). We use one side everywhere; "passage" is the default.
AUGMENTATION_ENCODERS = ("passage", "query")


def fuse_embeddings(query_emb: np.ndarray, augmentation_emb: np.ndarray,
                    weight: float = DEFAULT_AUGMENTATION_WEIGHT) -> np.ndarray:
    """``(1 − weight) · q + weight · a``. ``augmentation_emb`` is [N, D] or [N, K, D] (K averaged)."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"augmentation weight must be in [0, 1], got {weight}")
    if augmentation_emb.ndim == 3:
        augmentation_emb = augmentation_emb.mean(axis=1)
    if augmentation_emb.shape != query_emb.shape:
        raise ValueError(f"shape mismatch: queries {query_emb.shape} vs augmentations {augmentation_emb.shape}")
    return ((1.0 - weight) * query_emb + weight * augmentation_emb).astype(np.float32)
