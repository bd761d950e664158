# What runner/backends/flux_backend.py calls: setup, set_order!, train_epoch!, evaluate, probe_step,
# parameters, set_state!, adam_state, synchronize!, device_peak_memory, build_info. Everything Python needs back
# is a Julia Tuple, Int, Float64, String or Array (juliacall converts these); only set_order! and probe_step
# read Python objects (NumPy indices), so Python may call the others with the GIL released.

mutable struct State
    device::Symbol
    model::Any
    opt::Any
    slots::Vector{Tuple{Int,Symbol}}
    train_x::AbstractArray      # (W, H, 1, N) Float32 on the device
    train_y::AbstractMatrix     # (classes, N) one-hot Float32 on the device
    test_x::AbstractArray
    test_y::AbstractMatrix
    order::AbstractMatrix       # (batch, steps): the current batches, 1-based, on the device
    eval_batch_size::Int
end

"One-hot (classes, N) Float32 matrix of 0-based integer labels."
onehot_f32(y::AbstractVector{<:Integer}, classes::Int) = Float32.(Flux.onehotbatch(y, 0:(classes - 1)))

"""
    setup(dir, device) -> State

Read the bundle Python wrote to `dir` (weights, data, layer list and the spec's optimizer and loss
fields), build the model and SpecAdam on `device` ("cpu", "cuda" or "metal").
"""
function setup(dir::AbstractString, device::AbstractString)
    meta, tensors, names = read_bundle(dir)
    spec = meta.spec
    String(spec.optimizer) == "adam" || error("DLBenchFlux has no optimizer $(spec.optimizer)")
    String(spec.loss) == "softmax_cross_entropy" || error("DLBenchFlux has no loss $(spec.loss)")
    dev = Symbol(device)
    functional(Val(dev)) || error("device $device is not functional here")
    prepare_device(Val(dev))
    to = device_adaptor(Val(dev))
    params = [tensors[n] for n in meta.params]
    model, slots = build(meta.layers, params)
    model = to(model)
    rule = SpecAdam(Float64(spec.learning_rate), (Float64(spec.beta1), Float64(spec.beta2)),
                    Float64(spec.eps), Float64(spec.weight_decay))
    opt = Optimisers.setup(rule, model)
    classes = Int(meta.classes)
    images(x) = to(reshape(x, size(x, 1), size(x, 2), 1, size(x, 3)))   # (W, H, N) -> WHCN
    state = State(dev, model, opt, slots,
                  images(tensors["train_x"]), to(onehot_f32(tensors["train_y"], classes)),
                  images(tensors["test_x"]), to(onehot_f32(tensors["test_y"], classes)),
                  to(zeros(Int, Int(spec.batch_size), 0)), Int(spec.eval_batch_size))
    synchronize!(state)
    return state
end

"""
    set_order!(state, order)

The batches of the next train_epoch! call: `order` as NumPy hands it over (a (steps, batch) array
of 0-based sample indices, indexed order[step, i] through juliacall's PyArray), stored as a
(batch, steps) 1-based matrix on the device so each step reads one contiguous column.
"""
function set_order!(s::State, order::AbstractMatrix{<:Integer})
    s.order = device_adaptor(Val(s.device))(permutedims(Int.(order)) .+ 1)
    return nothing
end

"The mean softmax cross-entropy of a batch, and the logits (kept for the accuracy count)."
function loss_and_logits(model, x, y)
    logits = model(x)
    return Flux.Losses.logitcrossentropy(logits, y), logits
end

# Samples whose true class has the largest logit. Written as a comparison with the column maximum
# (no argmax, no scalar indexing) so it runs unchanged on a GPU; it differs from argmax only on an
# exact tie of two float32 logits.
count_correct(logits, y) = Int(sum((logits .== maximum(logits; dims = 1)) .& (y .> 0)))

"""
    train_epoch!(state) -> (loss_sum, correct, steps)

One optimizer step per column of the current order: explicit gradients (Flux.withgradient) and
Optimisers.update! with SpecAdam. loss_sum adds the per-step mean losses, as the harness expects.
"""
train_epoch!(s::State) = train_loop!(s.model, s.opt, s.train_x, s.train_y, s.order)

# A function barrier: State's fields are abstractly typed, this loop is compiled for the concrete
# array types (Array or CuArray/MtlArray) once.
function train_loop!(model, opt, train_x, train_y, order)
    loss_sum, correct = 0.0, 0
    for j in axes(order, 2)
        idx = order[:, j]
        x = train_x[:, :, :, idx]
        y = train_y[:, idx]
        r = Flux.withgradient(m -> loss_and_logits(m, x, y), model)
        loss, logits = r.val
        Optimisers.update!(opt, model, r.grad[1])
        loss_sum += loss
        correct += count_correct(logits, y)
    end
    return loss_sum, correct, size(order, 2)
end

"Test samples classified correctly, in chunks of eval_batch_size."
evaluate(s::State) = eval_loop(s.model, s.test_x, s.test_y, s.eval_batch_size)

function eval_loop(model, test_x, test_y, batch::Int)
    n, correct = size(test_x, 4), 0
    for lo in 1:batch:n
        hi = min(lo + batch - 1, n)
        correct += count_correct(model(test_x[:, :, :, lo:hi]), test_y[:, lo:hi])
    end
    return correct
end

"""
    probe_step(state, idx) -> (loss, logits, grads...)

Loss, logits and gradients of one batch (0-based sample indices) at the current weights, without
updating them: the parity gate's step-1 check. Logits come back (classes, batch), i.e. NumPy's
(batch, classes) in bundle layout; gradients in canonical order and bundle layout.
"""
function probe_step(s::State, idx::AbstractVector{<:Integer})
    i = device_adaptor(Val(s.device))(Int.(idx) .+ 1)
    x, y = s.train_x[:, :, :, i], s.train_y[:, i]
    r = Flux.withgradient(m -> loss_and_logits(m, x, y), s.model)
    loss, logits = r.val
    return (Float64(loss), Array(logits), canonical(r.grad[1].layers, s.slots)...)
end

"The current weights, canonical order, bundle layout, on the host."
parameters(s::State) = Tuple(canonical(s.model.layers, s.slots))

"""
    set_state!(state, dir, t)

Load weights and SpecAdam's moments from the bundle Python wrote to `dir` (flux_backend.write_state:
the parameters under their canonical names, then `m:<name>`, then `v:<name>`, canonical order and
bundle layout, `meta.params` the names), `t` steps already taken: the next update is step t + 1,
with its bias corrections. The parity gate checks single steps from the reference's state this way.
Arrays are copied into the model's and the optimizer's own (device) arrays, so the Chain and the
Optimisers.setup tree stay the ones train_epoch! updates.
"""
function set_state!(s::State, dir::AbstractString, t::Integer)
    t >= 0 || error("set_state!: $t steps taken; it must be 0 or more")
    meta, tensors, _ = read_bundle(dir)
    names = [String(n) for n in meta.params]
    length(names) == 2 * length(s.slots) ||
        error("set_state!: $(length(names)) parameter tensors for $(length(s.slots)) layers with weight and bias")
    to = device_adaptor(Val(s.device))
    k = 0
    for (i, kind) in s.slots
        layer, leaves = s.model.layers[i], s.opt.layers[i]
        for field in (:weight, :bias)
            k += 1
            name = names[k]
            x, leaf = getproperty(layer, field), getproperty(leaves, field)
            mt, vt, _ = leaf.state
            for (dst, src) in ((x, tensors[name]), (mt, tensors["m:" * name]), (vt, tensors["v:" * name]))
                a = flux_layout(kind, field, src)
                # copyto! checks lengths only: a dense weight left (in, out) would load silently.
                size(a) == size(dst) || error("set_state!: $name has size $(size(a)), the model's $(size(dst))")
                copyto!(dst, to(a))
            end
            leaf.state = (mt, vt, Int(t))   # SpecAdam's state: (m, v, steps taken)
        end
    end
    synchronize!(s)
    return nothing
end

"""
    adam_state(state) -> (t, m..., v...)

SpecAdam's steps taken and its moments on the host, canonical order and bundle layout (as
`parameters`): the first moments of every tensor, then the second moments.
"""
function adam_state(s::State)
    t = s.opt.layers[first(s.slots)[1]].weight.state[3]
    return (Int(t), canonical(moment_layers(s.opt, s.slots, 1), s.slots)...,
            canonical(moment_layers(s.opt, s.slots, 2), s.slots)...)
end

# The optimizer tree's layers with the k-th state entry (1 = m, 2 = v) of each Leaf as `weight` and
# `bias`, indexed like the Chain's layers, so `canonical` converts them like weights.
function moment_layers(opt, slots, k::Int)
    layers = Vector{Any}(nothing, length(opt.layers))
    for (i, _) in slots
        l = opt.layers[i]
        layers[i] = (weight = l.weight.state[k], bias = l.bias.state[k])
    end
    return layers
end

synchronize!(s::State) = (synchronize(Val(s.device)); nothing)

device_peak_memory(s::State) = peak_memory(Val(s.device))

"Versions, threads and BLAS: the record's framework info (and `python -m runner.machine.buildinfo flux`)."
function build_info(device::AbstractString = "cpu")
    dev = Val(Symbol(device))
    pkgver(m) = try string(pkgversion(m)) catch; nothing end
    return JSON3.write(Dict(
        "julia" => string(VERSION),
        "flux" => pkgver(Flux), "optimisers" => pkgver(Optimisers), "zygote" => pkgver(Zygote),
        "nnlib" => pkgver(Flux.NNlib),
        "julia_threads" => Threads.nthreads(),
        "blas_threads" => BLAS.get_num_threads(),
        "blas" => string(BLAS.get_config()),
        "device" => device, "device_name" => (try device_name(dev) catch; nothing end),
        "functional" => functional(dev),
    ))
end
