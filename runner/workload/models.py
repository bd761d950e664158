"""Model architectures as plain layer lists: the one description every backend builds from.

    python -m runner run --model lenet5      # or mlp, cnn, resnet18 (mlp4, cnn4: the ensemble study's)
    python -m runner ensemble --arch mlp4|cnn4

A backend turns the list into its framework's layers; the reference initializer and the float64
reference read the same list for parameter shapes, names and math, so a model exists in exactly one
place. `plan(model)` resolves the list into Nodes (shapes and canonical names); `params(model)` and
`buffers(model)` list the tensors in canonical order, which is PyTorch's model.parameters() order of
the torch build (torch_backend builds its modules under these very names).

resnet18 is torchvision's ResNet-18 adapted to 1x28x28 (11,172,810 parameters):
  stem: conv 3x3 1->64, stride 1, pad 1, no bias; BatchNorm; ReLU; NO max-pool.
  4 stages of 2 BasicBlocks, 64, 128, 256, 512 channels, strides 1, 2, 2, 2 (28 -> 28, 14, 7, 4):
  each block conv3x3(stride)-BN-ReLU-conv3x3-BN plus a shortcut, ReLU after the add; the shortcut
  is a 1x1 conv with the block's stride (no bias) + BN where the shape changes (the first block of
  stages 2-4), the identity otherwise. Every 3x3 conv pads 1 on every side (symmetric, also when
  the stride is 2 on an even input).
  Global average pool over H, W; fc 512 -> 10. Convs have no bias (as torchvision).
  Names as torchvision's: conv1, bn1, layer1.0.conv1, ..., layer2.0.downsample.0/.1, ..., fc.

Batch norm is part of the workload's math, defined here once (BatchNorm's docstring) with its
constants eps = 1e-5, momentum = 0.1 in the model definition: no spec field holds them (a new
field would change every existing spec_hash); the model name pins them.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod


@dataclass(frozen=True)
class Conv:
    """Cross-correlation (every framework's 'conv') with zero padding `pad` on every side (the same
    on both sides, also where a strided window does not reach the last row: frameworks' 'same'
    padding would pad asymmetrically), stride `stride`, a bias unless bias=False."""

    out: int
    kernel: int
    pad: int = 0
    stride: int = 1
    bias: bool = True
    name: str | None = None  # None: conv1, conv2, ... counted in its scope


@dataclass(frozen=True)
class Dense:
    out: int
    name: str | None = None  # None: fc1, fc2, ... counted in its scope


@dataclass(frozen=True)
class BatchNorm:
    """Batch normalization per channel over (N, H, W): y = gamma * (x - mu) / sqrt(var + eps) + beta.

    Training mode: mu and var are the batch's mean and BIASED variance (divided by n = N*H*W), and
    the running statistics (buffers running_mean, running_var) become
        running = (1 - momentum) * running + momentum * batch_stat,
    with the batch's UNBIASED variance (divided by n - 1) for running_var: PyTorch's rule, which
    every backend implements exactly (Keras' and flax's BN use momentum' = 1 - momentum and the
    biased variance, so TF and JAX write the layer out). Eval mode: mu, var = the running statistics.
    gamma starts at 1, beta at 0, running_mean at 0, running_var at 1."""

    eps: float = 1e-5
    momentum: float = 0.1
    name: str | None = None  # None: bn1, bn2, ... counted in its scope


@dataclass(frozen=True)
class Residual:
    """body(x) + shortcut(x); an empty shortcut is the identity. Its layers are named inside the
    block's `name` (layer1.0.conv1), the shortcut's by position (layer2.0.downsample.0)."""

    body: tuple
    shortcut: tuple = ()
    name: str = ""
    shortcut_name: str = "downsample"


@dataclass(frozen=True)
class ReLU:
    pass


@dataclass(frozen=True)
class MaxPool:
    size: int


@dataclass(frozen=True)
class Flatten:
    """Flattens in the canonical NCHW order; NHWC backends permute fc rows to match."""


@dataclass(frozen=True)
class GlobalAvgPool:
    """(C, H, W) -> (C,): the mean over H and W (torchvision's AdaptiveAvgPool2d(1) + flatten)."""


def _basic_block(name: str, c_in: int, c_out: int, stride: int) -> tuple:
    """torchvision's BasicBlock: its ReLU after the add is the next layer of the list."""
    body = (Conv(c_out, 3, pad=1, stride=stride, bias=False), BatchNorm(), ReLU(),
            Conv(c_out, 3, pad=1, bias=False), BatchNorm())
    changes = stride != 1 or c_in != c_out
    shortcut = (Conv(c_out, 1, stride=stride, bias=False), BatchNorm()) if changes else ()
    return Residual(body, shortcut, name=name), ReLU()


def _resnet18() -> tuple:
    layers, c_in = [Conv(64, 3, pad=1, bias=False), BatchNorm(), ReLU()], 64
    for stage, (c_out, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2)), start=1):
        layers += [*_basic_block(f"layer{stage}.0", c_in, c_out, stride),
                   *_basic_block(f"layer{stage}.1", c_out, c_out, 1)]
        c_in = c_out
    return (*layers, GlobalAvgPool(), Dense(10, name="fc"))


MODELS: dict[str, tuple] = {
    # LeNet-5 as DESIGN.md defines it: 61,706 parameters.
    "lenet5": (
        Conv(6, 5, pad=2), ReLU(), MaxPool(2),
        Conv(16, 5), ReLU(), MaxPool(2),
        Flatten(), Dense(120), ReLU(), Dense(84), ReLU(), Dense(10),
    ),
    "mlp": (Flatten(), Dense(512), ReLU(), Dense(512), ReLU(), Dense(10)),
    # No dropout: dropout draws framework-specific random masks and would break parity.
    "cnn": (
        Conv(32, 3), ReLU(), Conv(64, 3), ReLU(), MaxPool(2),
        Flatten(), Dense(128), ReLU(), Dense(10),
    ),
    "resnet18": _resnet18(),  # the module docstring says it in words
    # The ensemble study's architectures (python -m runner ensemble --arch), four weight layers each.
    # mlp4: 784-512-512-512-10, 932,362 parameters.
    "mlp4": (Flatten(), Dense(512), ReLU(), Dense(512), ReLU(), Dense(512), ReLU(), Dense(10)),
    # cnn4: conv 1->16 3x3 pad 1, ReLU, max-pool 2; conv 16->32 3x3 pad 1, ReLU, max-pool 2;
    # flatten (32*7*7 = 1568) -> fc 128, ReLU -> fc 10 logits. 206,922 parameters.
    "cnn4": (
        Conv(16, 3, pad=1), ReLU(), MaxPool(2),
        Conv(32, 3, pad=1), ReLU(), MaxPool(2),
        Flatten(), Dense(128), ReLU(), Dense(10),
    ),
}

INPUT_SHAPE = (1, 28, 28)  # C, H, W of every dataset in the catalog


@dataclass(frozen=True)
class Node:
    """One layer of a model with everything resolved: shapes without the batch axis, and its
    canonical name (parameterised layers: 'layer1.0.conv1'; a Residual: its block name; else None).
    A Residual's body and shortcut are Nodes too."""

    layer: object
    name: str | None
    shape_in: tuple[int, ...]
    shape_out: tuple[int, ...]
    body: tuple = ()
    shortcut: tuple = ()


def _shape_after(layer, shape: tuple[int, ...]) -> tuple[int, ...]:
    if isinstance(layer, Conv):
        c, h, w = shape
        return (layer.out, *((n + 2 * layer.pad - layer.kernel) // layer.stride + 1 for n in (h, w)))
    if isinstance(layer, MaxPool):
        c, h, w = shape
        return (c, h // layer.size, w // layer.size)
    if isinstance(layer, Flatten):
        return (prod(shape),)
    if isinstance(layer, GlobalAvgPool):
        return shape[:1]
    if isinstance(layer, Dense):
        return (layer.out,)
    return shape


_AUTO = {Conv: "conv", Dense: "fc", BatchNorm: "bn"}


def _resolve(layers: tuple, shape: tuple[int, ...], prefix: str = "", positional: bool = False) -> tuple:
    """Nodes of `layers` from input `shape`; names prefixed with `prefix`, counted per kind in this
    scope (conv1, bn1, conv2, ...), or by position (downsample.0, .1) for a shortcut."""
    nodes, counts = [], {}
    for i, layer in enumerate(layers):
        if isinstance(layer, Residual):
            name = prefix + layer.name
            body = _resolve(layer.body, shape, name + ".")
            short = _resolve(layer.shortcut, shape, f"{name}.{layer.shortcut_name}.", positional=True)
            out = body[-1].shape_out
            if (short[-1].shape_out if short else shape) != out:
                raise ValueError(f"{name}: body gives {out}, shortcut {short[-1].shape_out if short else shape}")
            nodes.append(Node(layer, name, shape, out, body, short))
        else:
            name = None
            if type(layer) in _AUTO:
                counts[type(layer)] = counts.get(type(layer), 0) + 1
                own = layer.name or (str(i) if positional else f"{_AUTO[type(layer)]}{counts[type(layer)]}")
                name = prefix + own
            nodes.append(Node(layer, name, shape, _shape_after(layer, shape)))
        shape = nodes[-1].shape_out
    return tuple(nodes)


def plan(model: str) -> tuple[Node, ...]:
    """The model's top-level Nodes (Residuals hold theirs)."""
    return _resolve(MODELS[model], INPUT_SHAPE)


def nodes(model: str):
    """Every Node in canonical order, depth first: a Residual, then its body, then its shortcut."""
    def visit(seq):
        for n in seq:
            yield n
            yield from visit(n.body)
            yield from visit(n.shortcut)
    yield from visit(plan(model))


def walk(model: str, input_shape: tuple[int, ...] = INPUT_SHAPE):
    """Yield (layer, input shape, output shape) through `model`'s top level, shapes without the
    batch axis (a Residual is one layer here)."""
    for n in _resolve(MODELS[model], input_shape):
        yield n.layer, n.shape_in, n.shape_out


def has_batchnorm(model: str) -> bool:
    return any(isinstance(n.layer, BatchNorm) for n in nodes(model))


@dataclass(frozen=True)
class Param:
    """One trainable tensor in canonical (PyTorch) layout: conv OIHW, dense out x in, BN 1-D.
    init: 'uniform_fan_in' draws U(-1/sqrt(fan_in), +1/sqrt(fan_in)); 'ones' and 'zeros' are BN's
    gamma and beta (fan_in None)."""

    name: str
    shape: tuple[int, ...]
    fan_in: int | None
    init: str = "uniform_fan_in"


def params(model: str) -> list[Param]:
    """Parameters of `model` in canonical order: conv1.weight, conv1.bias, ..., fcN.bias."""
    out: list[Param] = []
    for n in nodes(model):
        layer, c = n.layer, n.shape_in[0]
        if isinstance(layer, Conv):
            fan_in = c * layer.kernel**2
            out.append(Param(f"{n.name}.weight", (layer.out, c, layer.kernel, layer.kernel), fan_in))
            if layer.bias:
                out.append(Param(f"{n.name}.bias", (layer.out,), fan_in))
        elif isinstance(layer, Dense):
            out += [Param(f"{n.name}.weight", (layer.out, c), c), Param(f"{n.name}.bias", (layer.out,), c)]
        elif isinstance(layer, BatchNorm):
            out += [Param(f"{n.name}.weight", (c,), None, "ones"), Param(f"{n.name}.bias", (c,), None, "zeros")]
    return out


def buffers(model: str) -> list[Param]:
    """State that is not trained but changes in training: BN's running statistics, in canonical
    order (torch's named_buffers, less num_batches_tracked, which only momentum=None reads)."""
    out: list[Param] = []
    for n in nodes(model):
        if isinstance(n.layer, BatchNorm):
            c = n.shape_in[0]
            out += [Param(f"{n.name}.running_mean", (c,), None, "zeros"),
                    Param(f"{n.name}.running_var", (c,), None, "ones")]
    return out


def batchnorms(model: str) -> dict[str, BatchNorm]:
    """{canonical name: BatchNorm} of every BN layer, in order."""
    return {n.name: n.layer for n in nodes(model) if isinstance(n.layer, BatchNorm)}


def feature_shape_before_flatten(model: str) -> tuple[int, ...]:
    """(C, H, W) entering Flatten: NHWC backends need it to permute the first dense layer."""
    return next(shape for layer, shape, _ in walk(model) if isinstance(layer, Flatten))


def n_params(model: str) -> int:
    return sum(prod(p.shape) for p in params(model))
