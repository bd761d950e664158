"""The micro-benchmarks in PyTorch: N models through torch.func, per-example gradients through vmap(grad).

    python -m runner ensemble --framework torch ...
    python -m runner per-sample-grads --framework torch ...

Models are the training backend's (runner.backends.torch_backend.build_model) with the reference
weights loaded (load_reference), on the backend's device; TF32 is off (the backend's constructor).
Every result comes back as NumPy in the canonical layout (conv OIHW, dense out x in), which is
torch's own, so nothing is converted.
"""

from __future__ import annotations

import numpy as np

from runner.backends.torch_backend import build_model, load_reference


def _sync(backend):
    return lambda out=None: backend.synchronize()  # cuda / mps synchronize; nothing to wait for on the CPU


def _model(backend, arch: str, params: dict):
    net = build_model(backend.torch, arch)
    load_reference(backend.torch, net, params)
    return net.to(backend.device)


def _tensor(backend, a: np.ndarray):
    return backend.torch.from_numpy(np.ascontiguousarray(a)).to(backend.device)


class Ensemble:
    """N models of `arch` stepped together: stack_module_state stacks their parameters along a new
    first axis, functional_call runs one stateless copy of the module with a model's slice, vmap maps
    it over the N slices and the N batches (x: (N, B, 28, 28), y: (N, B)).

    fprop: the vmapped forward and each model's mean cross-entropy (N losses, N x B x 10 logits),
           under torch.no_grad (no autograd graph is recorded).
    bprop: torch.func.grad of each model's loss, vmapped: the forward again plus the backward, to
           every parameter's gradient (what a training step needs before its optimizer update)."""

    def __init__(self, backend, arch: str, params: list[dict], x: np.ndarray, y: np.ndarray):
        torch = self.torch = backend.torch
        from torch.func import functional_call, grad, stack_module_state, vmap

        nets = [_model(backend, arch, p) for p in params]
        stacked, buffers = stack_module_state(nets)
        self.params = {k: v.detach() for k, v in stacked.items()}
        self.buffers, self.names = buffers, list(params[0])  # torch's parameter order is the canonical one
        base = build_model(torch, arch).to("meta")  # only the structure: its weights are never used

        def loss(p, b, xb, yb):
            logits = functional_call(base, (p, b), (xb[:, None],))
            return torch.nn.functional.cross_entropy(logits, yb), logits

        self._forward = vmap(loss)
        self._grad = vmap(grad(lambda p, b, xb, yb: loss(p, b, xb, yb)[0]))
        self.x, self.y = _tensor(backend, x), _tensor(backend, y)
        self.sync = _sync(backend)
        self.sync()

    def fprop(self):
        with self.torch.no_grad():
            return self._forward(self.params, self.buffers, self.x, self.y)

    def bprop(self):
        return self._grad(self.params, self.buffers, self.x, self.y)

    def logits(self, fprop_out) -> np.ndarray:
        return fprop_out[1].cpu().numpy()

    def grads(self, bprop_out) -> list[dict]:
        """One canonical {name: gradient} per model."""
        arrays = [g.cpu().numpy() for g in bprop_out.values()]
        return [{name: a[i] for name, a in zip(self.names, arrays)} for i in range(len(arrays[0]))]


def alone(backend, arch: str, params: dict, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, dict]:
    """One model by itself, the way training runs it: eager forward, mean cross-entropy, backward
    (autograd): (logits (B, 10), canonical gradients)."""
    torch = backend.torch
    net = _model(backend, arch, params)
    logits = net(_tensor(backend, x)[:, None])
    torch.nn.functional.cross_entropy(logits, _tensor(backend, y)).backward()
    return logits.detach().cpu().numpy(), {n: p.grad.cpu().numpy() for n, p in zip(params, net.parameters())}


class PerSample:
    """Per-example gradients of the mean cross-entropy of one example (a batch of 1), for the first
    B examples of x (B_max, 28, 28), y (B_max,).

    vmap: torch.func.vmap(torch.func.grad(loss of one example)) over the B examples, the weights shared.
    loop: torch.func.grad of one example, called B times from Python, the results stacked."""

    vectorized = "torch.func.vmap(torch.func.grad(loss of one example))"
    looped = "torch.func.grad(loss of one example), a Python loop over the batch, then torch.stack"

    def __init__(self, backend, model: str, params: dict, x: np.ndarray, y: np.ndarray):
        torch = self.torch = backend.torch
        from torch.func import functional_call, grad, vmap

        net = _model(backend, model, params)
        self.params = {k: v.detach() for k, v in net.named_parameters()}
        self.names = list(params)

        def loss(p, x1, y1):
            logits = functional_call(net, p, (x1[None, None],))
            return torch.nn.functional.cross_entropy(logits, y1[None])

        self._one = grad(loss)
        self._vmap = vmap(grad(loss), in_dims=(None, 0, 0))
        self.x, self.y = _tensor(backend, x), _tensor(backend, y)
        self.sync = _sync(backend)
        self.sync()

    def vmap(self, b: int):
        x, y = self.x[:b], self.y[:b]
        return lambda: self._vmap(self.params, x, y)

    def loop(self, b: int):
        xs, ys = self.x[:b], self.y[:b]

        def run():
            each = [self._one(self.params, xs[i], ys[i]) for i in range(b)]
            return {k: self.torch.stack([g[k] for g in each]) for k in self.params}
        return run

    def numpy(self, out) -> dict:
        """{canonical name: (B, ...)}."""
        return {name: g.cpu().numpy() for name, g in zip(self.names, out.values())}
