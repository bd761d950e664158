"""Canonical (PyTorch, NCHW) parameter layout <-> the channels-last layout of TensorFlow and JAX.

    python -m runner run --framework tensorflow,jax     # both load the reference weights through here
    python -m runner verify                             # and hand gradients and weights back through here

Canonical: conv OIHW, dense out x in, features flattened in C,H,W order. Channels-last: conv HWIO,
dense in x out, features flattened in H,W,C order, so the first dense layer after a conv stack
needs its input rows permuted as well as transposed (not after a global average pool: no Flatten).
1-D tensors (biases, batch norm's gamma, beta and running statistics) are the same in both. Both
directions are here, side by side, so a round trip is the identity by construction (a test checks it).
"""

from __future__ import annotations

import numpy as np

from runner.workload import models


def _flatten_shape(model: str) -> tuple[int, int, int] | None:
    """(C, H, W) entering Flatten when the flatten order differs between layouts, else None."""
    try:
        c, h, w = models.feature_shape_before_flatten(model)
    except StopIteration:
        return None
    return (c, h, w) if c > 1 and h * w > 1 else None  # one channel or 1x1 maps: same order


def _first_dense(model: str) -> str:
    """Name of the first dense layer's weight: the one that reads the flattened features."""
    dense = next(n.name for n in models.nodes(model) if isinstance(n.layer, models.Dense))
    return f"{dense}.weight"


def to_channels_last(model: str, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Canonical params (or gradients) -> channels-last arrays, same names and order."""
    chw, fc1 = _flatten_shape(model), _first_dense(model)
    out = {}
    for name, a in params.items():
        if a.ndim == 4:                        # OIHW -> HWIO
            a = a.transpose(2, 3, 1, 0)
        elif a.ndim == 2:
            if name == fc1 and chw:            # (out, C*H*W) -> (H*W*C, out)
                c, h, w = chw
                a = a.reshape(a.shape[0], c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, -1)
            else:                              # out x in -> in x out
                a = a.T
        out[name] = np.ascontiguousarray(a)
    return out


def from_channels_last(model: str, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Channels-last params (or gradients) -> canonical arrays, same names and order."""
    chw, fc1 = _flatten_shape(model), _first_dense(model)
    out = {}
    for name, a in params.items():
        a = np.asarray(a)
        if a.ndim == 4:                        # HWIO -> OIHW
            a = a.transpose(3, 2, 0, 1)
        elif a.ndim == 2:
            if name == fc1 and chw:            # (H*W*C, out) -> (out, C*H*W)
                c, h, w = chw
                a = a.reshape(h, w, c, -1).transpose(3, 2, 0, 1).reshape(-1, c * h * w)
            else:
                a = a.T
        out[name] = np.ascontiguousarray(a)
    return out


def leaf(kind: str, ndim: int) -> str:
    """The tree's name for a canonical tensor kind: flax's and Keras' kernel for a conv/dense
    weight, flax's scale for batch norm's (1-D) weight; bias and running_mean/var as they are."""
    if kind == "weight":
        return "kernel" if ndim > 1 else "scale"
    return kind


def to_tree(flat: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """{'conv1.weight': w, 'conv1.bias': b, 'layer1.0.bn1.weight': g, ...} -> {'conv1': {'kernel': w,
    'bias': b}, 'layer1.0.bn1': {'scale': g}, ...}: the nesting flax and Keras use, split at the last
    dot, the canonical layer names kept as module names. Buffers (running_mean/var) nest the same way."""
    tree: dict[str, dict] = {}
    for name, a in flat.items():
        layer, kind = name.rsplit(".", 1)
        tree.setdefault(layer, {})[leaf(kind, np.ndim(a))] = a
    return tree


def from_tree(model: str, tree, buffers: bool = False) -> dict[str, np.ndarray]:
    """The inverse of to_tree, in canonical parameter order (buffers=True: buffer order)."""
    out = {}
    for p in (models.buffers if buffers else models.params)(model):
        layer, kind = p.name.rsplit(".", 1)
        out[p.name] = np.asarray(tree[layer][leaf(kind, len(p.shape))])
    return out
