"""PyTorch backend: the spec in plain eager PyTorch, data resident on the device.

    python -m runner run --framework torch [--device cuda|mps|cpu]
    python -m runner run --framework torch --launcher torchrun --nproc 2    # DistributedDataParallel
    python -m runner run --framework torch --option torch.loader=dataloader --option torch.workers=4
    python -m runner run --framework torch --option torch.step=compile    # or step=graph on CUDA

step=graph|compile run the same step as one CUDA graph / one torch.compile'd function
(runner.backends.torch_steps, which says why and what they leave out); eager is the default.

loader=dataloader feeds the steps from a torch DataLoader over the raw uint8 images with a
per-sample transform and `workers` worker processes instead (runner.backends.loaders: same batches,
same bits, the wait for them timed as the record's timing.epoch_data_s).

Under torchrun (WORLD_SIZE > 1) the same workload runs data-parallel: the spec's global batch is
split evenly across the ranks (rank r takes columns r*b..(r+1)*b of every row of the spec's batch
order, b = batch / world size), DistributedDataParallel averages the gradients, so every step sees
the same global batch and the same mean gradient as one process: the same training, which the
parity gate checks. gloo on the CPU, NCCL on CUDA (one GPU per rank, LOCAL_RANK).

Batch norm (resnet18) is torch's own BatchNorm2d, whose rule is the workload's (models.BatchNorm);
train_epoch and probe_step run in training mode, evaluate in eval mode. Under DDP it becomes
SyncBatchNorm (the global batch's statistics), which torch runs on CUDA only: resnet18 under
torchrun on the CPU is refused.
"""

from __future__ import annotations

import functools

import numpy as np

from runner.workload import ranks
from runner.workload import models
from runner.backends import loaders, torch_steps
from runner.backends.base import CPU_PEAK_MEMORY, EpochStats, FrameworkUnavailable, parse_options, single_parallel
from runner.workload.spec import Spec


def build_model(torch, model: str, sync_bn: bool = False):
    """An nn.Module from the model's layer list: its conv/dense/BN layers registered under their
    canonical names (conv1, layer1.0.bn1, ...: nested modules at the dots), so named_parameters()
    and named_buffers() are the canonical names in canonical order; forward runs the plan.
    sync_bn: torch.nn.SyncBatchNorm (the whole DDP batch's statistics) instead of BatchNorm2d."""
    root = _net_class(torch)()
    root.steps = _steps(torch, root, models.plan(model), sync_bn)
    return root


@functools.cache
def _net_class(torch):
    """One class for every model built (torch.func.stack_module_state stacks only same-class modules)."""
    class Net(torch.nn.Module):
        def forward(self, x):
            return _run(self.steps, x)
    return Net


def _run(steps, x):
    for step in steps:
        x = step(x)
    return x


def _register(torch, root, name: str, module) -> None:
    """root.<a>.<b>.<c> = module for name 'a.b.c', plain nn.Modules in between (torchvision's
    layer1 and layer1.0), so torch names the parameters as the canonical list does."""
    *path, leaf = name.split(".")
    for part in path:
        if part not in root._modules:
            root.add_module(part, torch.nn.Module())
        root = root._modules[part]
    root.add_module(leaf, module)


def _steps(torch, root, seq, sync_bn: bool) -> list:
    """The callables that run `seq` (Nodes), each parameterised layer registered on root."""
    nn, out = torch.nn, []
    for node in seq:
        layer, c_in = node.layer, node.shape_in[0]
        if isinstance(layer, models.Conv):
            m = nn.Conv2d(c_in, layer.out, layer.kernel, stride=layer.stride, padding=layer.pad, bias=layer.bias)
        elif isinstance(layer, models.Dense):
            m = nn.Linear(c_in, layer.out)
        elif isinstance(layer, models.BatchNorm):
            # PyTorch's own rule is the workload's (models.BatchNorm): unbiased running_var.
            m = (nn.SyncBatchNorm if sync_bn else nn.BatchNorm2d)(c_in, eps=layer.eps, momentum=layer.momentum)
        elif isinstance(layer, models.Residual):
            body, short = _steps(torch, root, node.body, sync_bn), _steps(torch, root, node.shortcut, sync_bn)
            out.append(lambda x, body=body, short=short: _run(body, x) + _run(short, x))
            continue
        elif isinstance(layer, models.MaxPool):
            m = nn.MaxPool2d(layer.size)
        elif isinstance(layer, models.GlobalAvgPool):
            m = lambda x: x.mean(dim=(2, 3))  # noqa: E731
        else:
            m = {models.ReLU: nn.ReLU, models.Flatten: nn.Flatten}[type(layer)]()
        if node.name:
            _register(torch, root, node.name, m)
        out.append(m)
    return out


def make_optimizer(torch, spec: Spec, parameters):
    if spec.optimizer != "adam":
        raise FrameworkUnavailable(f"torch backend has no optimizer {spec.optimizer!r}")
    return torch.optim.Adam(parameters, lr=spec.learning_rate, betas=(spec.beta1, spec.beta2),
                            eps=spec.eps, weight_decay=spec.weight_decay)


def make_loss(torch, spec: Spec):
    if spec.loss != "softmax_cross_entropy":
        raise FrameworkUnavailable(f"torch backend has no loss {spec.loss!r}")
    return torch.nn.functional.cross_entropy  # mean reduction over the batch, as the spec says


def load_reference(torch, model, params: dict[str, np.ndarray], buffers: dict[str, np.ndarray] | None = None) -> None:
    """Copy canonical-layout reference params (and BN buffers, if given) over the default init.
    build_model registers them in canonical order (under the canonical names), already in torch's
    layout; matched by order, so a module wrapped around the model (autocast, tests) still loads."""
    mine = list(model.parameters())
    assert [tuple(p.shape) for p in mine] == [a.shape for a in params.values()], "model and reference differ"
    with torch.no_grad():
        for p, ref in zip(mine, params.values()):
            p.copy_(torch.from_numpy(np.asarray(ref)))
        if buffers is not None:
            for b, ref in zip(running_stats(model), buffers.values(), strict=True):
                b.copy_(torch.from_numpy(np.asarray(ref, np.float32)))


def running_stats(model) -> list:
    """BN's buffers in canonical order (running_mean, running_var of each layer; torch's
    num_batches_tracked counts steps for momentum=None only, which the workload never uses)."""
    return [b for n, b in model.named_buffers() if not n.endswith("num_batches_tracked")]


class TorchBackend:
    name = "torch"
    OPTIONS: dict = {"loader": ("resident", ("resident", "dataloader")), "workers": ("0", loaders.WORKERS),
                     "step": (torch_steps.MODES[0], torch_steps.MODES)}

    @staticmethod
    def check_options(options: dict) -> None:
        loaders.check("torch", options, "dataloader", {})
        if options.get("step", "eager") != "eager" and options.get("loader", "resident") != "resident":
            raise ValueError(f"torch option step={options['step']} indexes each batch from the resident data"
                             f" inside the step: use loader=resident (the default) with it")

    @staticmethod
    def check_device(options: dict, cuda: bool) -> None:
        """Refuse, before anything starts, a mode the device cannot run (cuda: whether the run's
        device is a CUDA GPU)."""
        if options.get("step") == "graph" and not cuda:
            raise ValueError("torch option step=graph captures the step as a CUDA graph: it needs an NVIDIA GPU"
                             " (--device cuda), not the CPU or MPS; step=compile runs everywhere")

    def __init__(self, spec: Spec, device: str = "auto", options: dict | None = None):
        self.options = parse_options(self.name, self.OPTIONS, options or {})
        self.check_options(self.options)
        try:
            import torch
        except Exception as e:  # a broken install raises more than ImportError
            raise FrameworkUnavailable(f"cannot import torch: {type(e).__name__}: {e}") from e
        # float32 at full precision (cuDNN convolutions default to TF32 on NVIDIA): the spec is float32.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        self.torch, self.spec = torch, spec
        self.world, self.rank = ranks.world_size(), ranks.rank()
        if spec.batch_size % self.world:
            raise ValueError(f"world size {self.world} does not divide the global batch {spec.batch_size}")
        self.device = self._pick_device(device)
        # Batch norm under DDP: each rank would normalize with its own slice's statistics, a different
        # function from the global batch's. SyncBatchNorm computes the global ones, but torch (2.13)
        # runs it on GPU/XPU/HPU inputs only ("SyncBatchNorm expected input tensor to be on GPU").
        self.sync_bn = self.world > 1 and models.has_batchnorm(spec.model)
        if self.sync_bn and self.device.type != "cuda":
            raise FrameworkUnavailable(f"{spec.model} under torchrun on {self.device.type}: batch norm needs"
                                       f" SyncBatchNorm, which torch {torch.__version__} runs on CUDA only;"
                                       f" use --nproc 1 or CUDA")
        self.step_mode = self.options["step"]
        if self.step_mode != "eager":
            self._check_step_mode()
        if self.world > 1:
            self._init_distributed()

    def _check_step_mode(self) -> None:
        """What step=graph|compile cannot run (runner.backends.torch_steps): said in one line."""
        mode = self.step_mode
        try:
            self.check_device(self.options, self.device.type == "cuda")
        except ValueError as e:
            raise FrameworkUnavailable(str(e)) from None
        if self.world > 1:
            raise FrameworkUnavailable(f"torch option step={mode} runs in one process: under torchrun"
                                       f" (DistributedDataParallel) use step=eager")
        lacks = torch_steps.missing_toolchain(self.device.type) if mode == "compile" else None
        if lacks:
            raise FrameworkUnavailable(f"torch option step=compile generates and builds kernels at run time: this"
                                       f" machine lacks {lacks} (Debian: apt-get install g++ python3-dev); use"
                                       f" step=eager" + (" or step=graph" if self.device.type == "cuda" else ""))
        if models.has_batchnorm(self.spec.model):
            raise FrameworkUnavailable(f"torch option step={mode}: {self.spec.model} has batch norm, whose"
                                       f" running statistics the fused step does not carry: use step=eager")

    def _init_distributed(self) -> None:
        """The process group torchrun's environment describes (once per process: the parity gate's
        fresh backend after training joins the same group)."""
        dist = self.torch.distributed
        self.comm = "nccl" if self.device.type == "cuda" else "gloo"
        if not dist.is_initialized():
            if self.device.type == "cuda":
                self.torch.cuda.set_device(self.device)
                dist.init_process_group("nccl", device_id=self.device)
            else:
                dist.init_process_group("gloo")
        if dist.get_world_size() != self.world:
            raise ValueError(f"process group has {dist.get_world_size()} ranks, WORLD_SIZE says {self.world}")

    def _pick_device(self, request: str):
        torch = self.torch
        cuda = torch.cuda.is_available()
        mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
        if request == "auto":
            request = "cuda" if cuda else "mps" if mps else "cpu"
        if (request == "cuda" and not cuda) or (request == "mps" and not mps):
            raise FrameworkUnavailable(f"device {request} requested, but torch {torch.__version__}"
                                       f" reports it unavailable")
        if request not in ("cpu", "cuda", "mps"):
            raise FrameworkUnavailable(f"torch backend has no device {request!r}")
        if request == "cuda" and self.world > 1:  # one GPU per rank on its node
            return torch.device("cuda", ranks.local_rank())
        return torch.device(request)

    def info(self) -> dict:
        torch, kind = self.torch, self.device.type
        name = {"cuda": lambda: torch.cuda.get_device_name(self.device), "mps": lambda: "Apple MPS",
                "cpu": lambda: None}[kind]()
        framework = {"name": "torch", "version": torch.__version__,
                     "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
                     "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if kind == "cuda" else None,
                     "mode": self._mode_name(), "tf32": False, "options": self.options}
        return {"framework": framework, "device": {"kind": kind, "name": name}, "parallel": self.parallel()}

    def _mode_name(self) -> str:
        """eager, graph (a CUDA graph), compile, or compile+graph (compiled, then graphed, on CUDA)."""
        if self.step_mode == "compile" and self.device.type == "cuda":
            return "compile+graph"
        return self.step_mode

    def parallel(self) -> dict:
        """The record's `parallel` block."""
        if self.world == 1:
            return single_parallel(self.spec.batch_size)
        return {"world_size": self.world, "processes": self.world, "devices": self.world,
                "strategy": "torch DistributedDataParallel", "comm_backend": self.comm,
                "global_batch": self.spec.batch_size, "per_rank_batch": self.spec.batch_size // self.world,
                "timing": "rank 0's clock after a barrier: the slowest rank's time"}

    def setup(self, params, train_x, train_y, test_x, test_y) -> None:
        torch, spec, dev = self.torch, self.spec, self.device
        self.model = build_model(torch, spec.model, sync_bn=self.sync_bn)
        load_reference(torch, self.model, params)  # BN buffers start as the reference's: mean 0, var 1
        self.model.to(dev)
        self.net = self.model  # what trains: the model, or its DDP wrapper (which averages gradients)
        if self.world > 1:
            ddp = torch.nn.parallel.DistributedDataParallel
            self.net = ddp(self.model, device_ids=[dev] if dev.type == "cuda" else None)
        # torch.optim.Adam steps eagerly; the other modes write its update out (torch_steps.FusedStep)
        self.optimizer = make_optimizer(torch, spec, self.model.parameters()) if self.step_mode == "eager" else None
        self.loss_fn = make_loss(torch, spec)
        to_dev = lambda a, d=dev: torch.from_numpy(np.ascontiguousarray(a)).to(d)  # noqa: E731
        self.loader = None
        if self.options["loader"] == "dataloader":  # raw pixels in a DataLoader; the normalized set
            # stays on the host for probe_step alone (the gate), so device memory is the loader's
            workers = int(self.options["workers"])
            loaders.note_workers(self.name, workers)
            raw = loaders.raw_pixels(train_x, spec.norm_mean, spec.norm_std)
            self.loader = loaders.TorchLoader(torch, raw, train_y, spec.norm_mean, spec.norm_std, workers, dev)
        host = torch.device("cpu") if self.loader is not None else dev
        self.train_x, self.train_y = to_dev(train_x[:, None], host), to_dev(train_y.astype(np.int64), host)
        self.test_x, self.test_y = to_dev(test_x[:, None]), to_dev(test_y.astype(np.int64))
        self.batch_size, self.eval_batch_size = spec.batch_size, spec.eval_batch_size
        self.fused = None
        if self.step_mode != "eager":  # the model's own parameters, stepped by one fused function
            self.fused = torch_steps.FusedStep(torch, self.step_mode, self.model, self.loss_fn, spec, dev,
                                               self.train_x, self.train_y)

    def train_epoch(self, order: np.ndarray) -> EpochStats:
        torch, model, opt = self.torch, self.net, self.optimizer
        assert order.shape[1] == self.batch_size
        order = self._my_columns(order)
        if self.fused is not None:
            model.train()
            loss_sum, correct = self.fused.epoch(self.torch.from_numpy(order).to(self.device))
            return EpochStats(loss_sum, correct, len(order))
        batches = self._batches(order)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        model.train()
        for x, y in batches:
            logits = model(x)
            loss = self.loss_fn(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            # Accumulated on the device: no host sync inside the epoch.
            loss_sum += loss.detach()
            correct += (logits.detach().argmax(1) == y).sum()
        if self.world > 1:  # one collective per epoch: the global batch's mean loss and count
            self.torch.distributed.all_reduce(loss_sum)
            self.torch.distributed.all_reduce(correct)
            loss_sum /= self.world
        return EpochStats(loss_sum, correct, len(order), batches.data_s if self.loader is not None else None)

    def _batches(self, order: np.ndarray):
        """The epoch's (x, y) on the device, one per row of `order`: from the loader (timed), or
        indexed from the resident data (no clock, no sync: the default path as it always ran)."""
        if self.loader is not None:
            return self.loader.epoch(order)
        rows = self.torch.from_numpy(order).to(self.device)
        return ((self.train_x.index_select(0, idx), self.train_y.index_select(0, idx)) for idx in rows)

    def _my_columns(self, order: np.ndarray) -> np.ndarray:
        """This rank's slice of every global batch (all of it in one process)."""
        b = order.shape[-1] // self.world
        return order[..., self.rank * b:(self.rank + 1) * b]

    def evaluate(self):
        torch, model = self.torch, self.model
        model.eval()
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        n = len(self.test_y)  # each rank evaluates its contiguous share of the test set
        lo, hi = n * self.rank // self.world, n * (self.rank + 1) // self.world
        test_x, test_y = self.test_x[lo:hi], self.test_y[lo:hi]
        with torch.inference_mode():
            for x, y in zip(test_x.split(self.eval_batch_size), test_y.split(self.eval_batch_size)):
                correct += (model(x).argmax(1) == y).sum()
        if self.world > 1:
            self.torch.distributed.all_reduce(correct)
        return correct

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)
        elif self.device.type == "mps":
            self.torch.mps.synchronize()
        if self.world > 1:  # every clock read waits for the slowest rank
            self.torch.distributed.barrier()

    def peak_memory(self):
        torch, kind = self.torch, self.device.type
        if kind == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device)), "torch.cuda.max_memory_allocated"
        if kind == "mps":  # torch.mps keeps no peak: the Metal driver's allocation at the end of training
            return int(torch.mps.driver_allocated_memory()), "torch.mps.driver_allocated_memory (at the end, not a peak)"
        return CPU_PEAK_MEMORY

    def probe_step(self, idx):
        torch, model = self.torch, self.model
        i = torch.from_numpy(self._my_columns(np.asarray(idx))).to(self.train_x.device)  # host in loader mode
        model.zero_grad(set_to_none=True)
        saved = self.buffers()  # a training-mode forward moves BN's running statistics: put them back
        model.train()
        logits = self.net(self.train_x.index_select(0, i).to(self.device))
        loss = self.loss_fn(logits, self.train_y.index_select(0, i).to(self.device))
        loss.backward()  # under DDP: the gradients are the ranks' average, i.e. the global batch's
        grads = {p.name: t.grad.cpu().numpy() for p, t in zip(models.params(self.spec.model), model.parameters())}
        model.zero_grad(set_to_none=True)
        with torch.no_grad():
            for b, a in zip(running_stats(model), saved.values()):
                b.copy_(torch.from_numpy(a))
        loss, logits = loss.detach(), logits.detach()
        if self.world > 1:  # the global batch's mean loss and all its logits, in batch order
            dist = self.torch.distributed
            dist.all_reduce(loss)
            loss /= self.world
            parts = [torch.empty_like(logits) for _ in range(self.world)]
            dist.all_gather(parts, logits)
            logits = torch.cat(parts)
        return float(loss), logits.cpu().numpy(), grads

    def parameters(self):
        return {p.name: t.detach().cpu().numpy().copy()
                for p, t in zip(models.params(self.spec.model), self.model.parameters())}

    def buffers(self):
        """BN's running statistics, canonical names and order ({} without BN)."""
        return {p.name: t.detach().cpu().numpy().copy()
                for p, t in zip(models.buffers(self.spec.model), running_stats(self.model), strict=True)}

    def set_state(self, params, m, v, t, buffers=None):
        # torch.optim.Adam keeps `step` as a float32 tensor but computes its bias corrections from
        # step.item(), a Python float: float64, as the spec's rule asks.
        torch, model = self.torch, self.model
        load_reference(torch, model, params, buffers)
        if self.fused is not None:  # into the tensors its step (or CUDA graph) holds
            self.fused.set_adam(m, v, t)
            return
        to_dev = lambda a: torch.from_numpy(np.array(a, np.float32)).to(self.device)  # noqa: E731
        for p, name in zip(model.parameters(), params):
            self.optimizer.state[p] = {"step": torch.tensor(float(t)), "exp_avg": to_dev(m[name]),
                                       "exp_avg_sq": to_dev(v[name])}

    def adam_state(self):
        names = [p.name for p in models.params(self.spec.model)]
        if self.fused is not None:
            return self.fused.adam_state(names)
        states = [self.optimizer.state.get(p, {}) for p in self.model.parameters()]
        get = lambda s, k, p: s[k].detach().cpu().numpy().copy() if k in s else np.zeros(tuple(p.shape), np.float32)  # noqa: E731
        m = {n: get(s, "exp_avg", p) for n, s, p in zip(names, states, self.model.parameters())}
        v = {n: get(s, "exp_avg_sq", p) for n, s, p in zip(names, states, self.model.parameters())}
        t = int(states[0]["step"]) if states and "step" in states[0] else 0
        return m, v, t
