"""FLOPs of one training step per image, counted layer by layer from the model definition.

    python -m runner compare results/ --columns gflops,peak     # via runner.records.efficiency

Conventions (the record's efficiency.flops_method says them in one line):
  * a multiply-add is 2 FLOPs; conv: 2*K*K*Cin*Cout*Hout*Wout per image, every kernel tap counted,
    also those over zero padding (as torch's FlopCounterMode; XLA leaves padding taps out);
    dense: 2*in*out.
  * backward of a conv/dense layer is 2x its forward (the input gradient and the weight gradient),
    except the first weight layer, whose input is the data and needs no gradient (1x).
  * elementwise work counts 1 FLOP per element per op, kept apart from conv/dense ("elementwise"):
    bias add (forward) and bias gradient (a sum); ReLU forward and its masked gradient; max-pool
    k*k-1 compares per output and 1 per input back; global average pool 1 per input each way;
    batch norm (training) 8 per element forward and 8 back; a residual add 1 per element forward
    and 1 back (the gradients meeting at the fork); softmax-cross-entropy 5 per class forward
    (max, subtract, exp, sum, log/pick) and 3 back. Layers before the first weight layer do no
    backward work.
  * Adam: 14 FLOPs per parameter per step (2 moment updates 3 + 4, 2 bias corrections, sqrt, +eps,
    lr scale, divide, subtract; +2 with weight decay), divided by the batch size per image.
The breakdown per layer (`layers`) is for notes; `total` is what a record keeps.
"""

from __future__ import annotations

from math import prod

from runner.workload import models

FMA = 2
ADAM_PER_PARAM = 14
METHOD = ("model definition (runner.workload.flops): conv/dense multiply-add = 2, backward = 2x forward "
          "(1x for the first layer), elementwise ops 1 each, Adam 14/parameter/step / batch")


def _layer(node, first_done: bool) -> dict:
    """{forward, backward, elementwise} FLOPs per image of one non-residual node."""
    layer, n_in, n_out = node.layer, prod(node.shape_in), prod(node.shape_out)
    fwd = ew = 0
    if isinstance(layer, models.Conv):
        fwd = FMA * layer.kernel ** 2 * node.shape_in[0] * n_out
        ew = 2 * n_out if layer.bias else 0
    elif isinstance(layer, models.Dense):
        fwd = FMA * n_in * n_out
        ew = 2 * n_out
    elif isinstance(layer, models.ReLU):
        ew = n_out + (n_in if first_done else 0)
    elif isinstance(layer, models.MaxPool):
        ew = (layer.size ** 2 - 1) * n_out + (n_in if first_done else 0)
    elif isinstance(layer, models.GlobalAvgPool):
        ew = n_in + (n_in if first_done else 0)
    elif isinstance(layer, models.BatchNorm):
        ew = 8 * n_in + (8 * n_in if first_done else 0)
    bwd = fwd * (2 if first_done else 1)
    return {"forward": fwd, "backward": bwd, "elementwise": ew}


def _walk(seq, first_done: bool, out: list) -> bool:
    """Append a row per layer of `seq` to `out`; return whether a weight layer has been passed."""
    for node in seq:
        layer = node.layer
        if isinstance(layer, models.Residual):
            body_done = _walk(node.body, first_done, out)
            short_done = _walk(node.shortcut, first_done, out)
            n = prod(node.shape_out)
            out.append({"name": f"{node.name} (add)", "kind": "Residual", "forward": 0, "backward": 0,
                        "elementwise": n + (prod(node.shape_in) if first_done else 0)})
            first_done = body_done or short_done
            continue
        row = _layer(node, first_done)
        out.append({"name": node.name or type(layer).__name__.lower(), "kind": type(layer).__name__, **row})
        first_done = first_done or isinstance(layer, (models.Conv, models.Dense))
    return first_done


def per_image(model: str, batch_size: int, weight_decay: float = 0.0) -> dict:
    """FLOPs of one training step per image of `model` at `batch_size`: forward and backward of the
    conv/dense layers, the elementwise work, Adam's share, their total, and the rows per layer."""
    rows: list[dict] = []
    _walk(models.plan(model), False, rows)
    classes = prod(models.plan(model)[-1].shape_out)
    rows.append({"name": "loss", "kind": "SoftmaxCrossEntropy", "forward": 0, "backward": 0,
                 "elementwise": 5 * classes + 3 * classes})
    adam = (ADAM_PER_PARAM + (2 if weight_decay else 0)) * models.n_params(model) / batch_size
    out = {key: sum(r[key] for r in rows) for key in ("forward", "backward", "elementwise")}
    return {**out, "adam": adam, "total": out["forward"] + out["backward"] + out["elementwise"] + adam,
            "layers": rows}


def of_spec(spec: dict) -> dict:
    """per_image for a record's spec (a dict: Spec.to_dict())."""
    return per_image(spec["model"], spec["batch_size"], spec.get("weight_decay") or 0.0)
