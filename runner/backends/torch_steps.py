"""The torch backend's step modes beyond eager (`--option torch.step=graph|compile`).

    python -m runner run --framework torch --device cuda --option torch.step=graph
    python -m runner run --framework torch --option torch.step=compile      # CPU too

Why: at batch 64 a LeNet-5 step is ~40 small kernels. Eagerly, Python dispatches each one (and
torch.optim.Adam a few per parameter), so on a big GPU the card idles between launches (2.65 s/epoch
on an H200, where the same step as one CUDA graph took 0.36 s). These modes run the *same* step:

- One step function, `FusedStep.step`: index the batch from the resident data, forward, backward
  (torch.func.grad_and_value over functional_call, so forward and backward are one traceable
  function), and torch.optim.Adam's own single-tensor rule written out op for op (lerp for m,
  mul/addcmul for v, the bias corrections in float64 from a float64 step count, the step size and
  sqrt(bias correction 2) rounded to float32 once, as Adam's Python-float scalars are), the loss and
  the correct count accumulated on the device. Nothing in it reads a value back to the host.
- `graph` (CUDA only): that function captured once into a torch.cuda.CUDAGraph (warm-up on a side
  stream first, as the CUDA-graphs recipe asks); each step is one copy of the batch's indices into
  a static buffer and one replay. The warm-up steps change the weights, so the state is saved before
  and put back after: the first timed step is the workload's first step.
- `compile`: the function compiled whole by torch.compile(fullgraph=True) (one region: forward,
  backward and Adam; no graph breaks, no per-step guards on Python numbers since the step count is
  a tensor); on CUDA the compiled step is then captured as in `graph`.

Capture and compilation happen in the first epoch, so the record's compile_s (first epoch minus the
steady median) holds them, apart from the steady epochs. Each mode passes the same parity gate as
eager: the gate sets weights and Adam moments through `set_state`, which copies into the tensors
the graph was captured with (their addresses must not change).

Not covered (refused with one line, runner.backends.torch_backend): loader=dataloader (the batch is
indexed inside the step), torchrun (DDP's gradient hooks), models with batch norm (running
statistics are buffers the functional step would have to thread through).
"""

from __future__ import annotations

import numpy as np

from runner.backends.base import FrameworkUnavailable

MODES = ("eager", "graph", "compile")
WARMUP_STEPS = 3  # side-stream iterations before capture (the recipe's 3; lazy init, cuDNN autotune)


def missing_toolchain(device_type: str) -> str | None:
    """What torch.compile's code generators need and this machine lacks, in words; None if nothing.
    Inductor builds its CPU kernels with a C++ compiler ($CXX, else g++ or clang++); on CUDA, Triton
    builds its launcher with a C compiler ($CC, else gcc or clang) against Python.h. Slim container
    images have neither, and the failure comes deep in the first compiled step as a long traceback."""
    import os
    import shutil
    import sysconfig

    cuda = device_type == "cuda"
    what, env, names = ("a C compiler", "CC", ("gcc", "clang")) if cuda else ("a C++ compiler", "CXX", ("g++", "clang++"))
    lacks = [] if (os.environ.get(env) and shutil.which(os.environ[env])) or any(map(shutil.which, names)) else [what]
    headers = os.path.join(sysconfig.get_paths()["include"], "Python.h")
    if cuda and not os.path.exists(headers):
        lacks.append(f"Python's headers ({headers})")
    return " and ".join(lacks) or None


class FusedStep:
    """The training step as one function over state tensors that never move (see the module doc)."""

    def __init__(self, torch, mode: str, model, loss_fn, spec, device, train_x, train_y):
        if spec.optimizer != "adam":
            raise FrameworkUnavailable(f"torch option step={mode} writes out Adam's update; the spec asks for"
                                       f" {spec.optimizer!r}: use step=eager")
        self.torch, self.mode, self.device = torch, mode, device
        self.model, self.loss_fn = model, loss_fn
        self.names = [n for n, _ in model.named_parameters()]
        # Detached views share the parameters' storage: updating them in place updates the model
        # (what evaluate, probe_step and parameters() read), without autograd's leaf checks.
        self.params = [p.detach() for p in model.parameters()]
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        # Adam's step count, float64 of shape (1,): torch 2.13's inductor on the CPU drops the in-place
        # update of a 0-d float64 argument (t stayed 0, so 1 - beta1**t = 0 and every weight went
        # inf/nan; shape (1,) and float32 are kept), checked by tests/test_torch_steps.py.
        self.t = torch.zeros(1, dtype=torch.float64, device=device)
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        self.idx = torch.zeros(spec.batch_size, dtype=torch.int64, device=device)  # the batch's rows
        self.train_x, self.train_y = train_x, train_y
        self.lr, self.beta1, self.beta2 = spec.learning_rate, spec.beta1, spec.beta2
        self.eps, self.weight_decay = spec.eps, spec.weight_decay
        self._compiled = torch.compile(self._step, fullgraph=True, dynamic=False) if mode == "compile" else None
        self.fn = self.step if mode != "compile" else lambda: self._compiled(*self._args())
        self.graph = None
        self.use_graph = mode == "graph" or (mode == "compile" and device.type == "cuda")

    def _loss(self, params: dict, x, y):
        logits = self.torch.func.functional_call(self.model, params, (x,))
        return self.loss_fn(logits, y), logits

    def step(self) -> None:
        """One optimizer step on the rows in self.idx (the state passed as arguments: torch.compile
        writes in-place updates of arguments back, of attributes it read not always)."""
        self._step(*self._args())

    def _args(self) -> tuple:
        """The state `_step` reads and updates, in its parameter order."""
        return (self.params, self.m, self.v, self.t, self.idx, self.train_x, self.train_y, self.loss_sum,
                self.correct)

    def _step(self, params, ms, vs, t, idx, train_x, train_y, loss_sum, correct) -> None:
        """torch.optim.Adam's _single_tensor_adam, the non-capturable branch, op for op; L2 weight
        decay added to the gradient as Adam does."""
        torch = self.torch
        x = train_x.index_select(0, idx)
        y = train_y.index_select(0, idx)
        grad_and_value = torch.func.grad_and_value(self._loss, has_aux=True)  # made here: dynamo traces it
        grads, (loss, logits) = grad_and_value(dict(zip(self.names, params)), x, y)
        with torch.no_grad():
            t.add_(1)
            bc1 = 1 - torch.pow(self.beta1, t)  # float64, as Adam's `1 - beta1 ** step`
            bc2 = 1 - torch.pow(self.beta2, t)
            step_size = (self.lr / bc1).to(torch.float32)
            bc2_sqrt = bc2.sqrt().to(torch.float32)
            for name, p, m, v in zip(self.names, params, ms, vs):
                g = grads[name]
                if self.weight_decay:
                    g = g.add(p, alpha=self.weight_decay)
                m.lerp_(g, 1 - self.beta1)
                v.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
                denom = (v.sqrt() / bc2_sqrt).add_(self.eps)
                p.sub_(step_size * m / denom)  # addcdiv_(m, denom, value=-step_size): (value*m)/denom
            loss_sum.add_(loss.detach())
            correct.add_((logits.detach().argmax(1) == y).sum())

    def epoch(self, rows):
        """Every row of `rows` ((steps, batch) int64 on the device) as one step; the epoch's
        (loss sum, correct count), still on the device."""
        self.loss_sum.zero_()
        self.correct.zero_()
        if self.use_graph and self.graph is None:
            self._capture(rows[0])
        for idx in rows:
            self.idx.copy_(idx)
            if self.graph is not None:
                self.graph.replay()
            else:
                self.fn()
        return self.loss_sum.clone(), self.correct.clone()

    def _state(self) -> list:
        return [*self.params, *self.m, *self.v, self.t, self.loss_sum, self.correct]

    def _capture(self, first_row) -> None:
        """Warm up on a side stream, capture one step, then put back the state the warm-up moved."""
        torch = self.torch
        saved = [s.clone() for s in self._state()]
        self.idx.copy_(first_row)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                self.fn()
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.fn()
        with torch.no_grad():
            for s, a in zip(self._state(), saved):
                s.copy_(a)
        self.graph = graph

    def set_adam(self, m: dict, v: dict, t: int) -> None:
        """Adam's moments and step count, copied into the tensors the step (or graph) holds."""
        torch = self.torch
        with torch.no_grad():
            for name, dst_m, dst_v in zip(m, self.m, self.v):
                dst_m.copy_(torch.from_numpy(np.asarray(m[name], np.float32)))
                dst_v.copy_(torch.from_numpy(np.asarray(v[name], np.float32)))
            self.t.fill_(float(t))

    def adam_state(self, names: list[str]):
        m = {n: a.cpu().numpy().copy() for n, a in zip(names, self.m)}
        v = {n: a.cpu().numpy().copy() for n, a in zip(names, self.v)}
        return m, v, int(self.t.item())
