"""Model architectures as plain layer lists: the one description every backend builds from.

    python -m runner run --model lenet5      # or mlp, cnn (mlp4, cnn4: the ensemble study's)
    python -m runner ensemble --arch mlp4|cnn4

A backend turns the list into its framework's layers; the reference initializer reads the same
list for parameter shapes, so a model exists in exactly one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod


@dataclass(frozen=True)
class Conv:
    """Cross-correlation (every framework's 'conv'), stride 1, zero padding `pad`."""

    out: int
    kernel: int
    pad: int = 0


@dataclass(frozen=True)
class Dense:
    out: int


@dataclass(frozen=True)
class ReLU:
    pass


@dataclass(frozen=True)
class MaxPool:
    size: int


@dataclass(frozen=True)
class Flatten:
    """Flattens in the canonical NCHW order; NHWC backends permute fc rows to match."""


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
class Param:
    """One trainable tensor in canonical (PyTorch) layout: conv OIHW, dense out x in."""

    name: str
    shape: tuple[int, ...]
    fan_in: int


def walk(model: str, input_shape: tuple[int, ...] = INPUT_SHAPE):
    """Yield (layer, input shape, output shape) through `model`, shapes without the batch axis."""
    shape = input_shape
    for layer in MODELS[model]:
        if isinstance(layer, Conv):
            c, h, w = shape
            grow = 2 * layer.pad - layer.kernel + 1
            new = (layer.out, h + grow, w + grow)
        elif isinstance(layer, MaxPool):
            c, h, w = shape
            new = (c, h // layer.size, w // layer.size)
        elif isinstance(layer, Flatten):
            new = (prod(shape),)
        elif isinstance(layer, Dense):
            new = (layer.out,)
        else:
            new = shape
        yield layer, shape, new
        shape = new


def params(model: str) -> list[Param]:
    """Parameters of `model` in canonical order: conv1.weight, conv1.bias, ..., fcN.bias."""
    out: list[Param] = []
    counts = {Conv: 0, Dense: 0}
    for layer, (fan_c, *rest), _ in walk(model):
        if isinstance(layer, (Conv, Dense)):
            counts[type(layer)] += 1
            if isinstance(layer, Conv):
                name, fan_in = f"conv{counts[Conv]}", fan_c * layer.kernel**2
                wshape = (layer.out, fan_c, layer.kernel, layer.kernel)
            else:
                name, fan_in = f"fc{counts[Dense]}", fan_c
                wshape = (layer.out, fan_c)
            out += [Param(f"{name}.weight", wshape, fan_in), Param(f"{name}.bias", (layer.out,), fan_in)]
    return out


def feature_shape_before_flatten(model: str) -> tuple[int, ...]:
    """(C, H, W) entering Flatten: NHWC backends need it to permute the first dense layer."""
    return next(shape for layer, shape, _ in walk(model) if isinstance(layer, Flatten))


def n_params(model: str) -> int:
    return sum(prod(p.shape) for p in params(model))
