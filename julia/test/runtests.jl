# DLBenchFlux's own tests: bundle layouts, the model, SpecAdam, set_state!/adam_state, and one training step against the
# float64 NumPy reference that `python -m runner.parity.flux_fixture` wrote to fixture/.
#
#     julia --project=julia -e 'using Pkg; Pkg.instantiate(); Pkg.test()'
#
# Tolerances are the parity gate's (runner/parity/gate.py TOLERANCES).

using Test
using Flux
using Optimisers
using DLBenchFlux

const FIXTURE = joinpath(@__DIR__, "fixture")

"||a - b|| / ||b|| over lists of arrays, in Float64."
function relnorm(a::AbstractVector, b::AbstractVector)
    num = sum(sum(abs2, Float64.(x) .- Float64.(y)) for (x, y) in zip(a, b))
    den = sum(sum(abs2, Float64.(y)) for y in b)
    return sqrt(num / den)
end

"""
    write_bundle(dir, named, params) -> dir

A Float32 bundle as runner/backends/julia_bundle.py writes one (flux_backend.write_state for
set_state!): `named` are name => array pairs, the arrays already in bundle layout (NumPy's shape
reversed), so their column-major bytes are NumPy's C-order bytes; 64-byte aligned offsets.
"""
function write_bundle(dir::AbstractString, named, params)
    entries = Any[]
    open(joinpath(dir, "tensors.bin"), "w") do io
        for (name, a) in named
            write(io, zeros(UInt8, mod(-position(io), 64)))
            push!(entries, Dict("name" => name, "dtype" => "float32", "shape" => reverse(collect(size(a))),
                                "offset" => position(io)))
            write(io, Array{Float32}(a))
        end
    end
    manifest = Dict("format" => DLBenchFlux.FORMAT, "byte_order" => "little", "tensors" => entries,
                    "params" => params)
    write(joinpath(dir, "manifest.json"), DLBenchFlux.JSON3.write(manifest))
    return dir
end

meta, tensors, names = DLBenchFlux.read_bundle(FIXTURE)
params = [tensors[n] for n in meta.params]

@testset "DLBenchFlux" begin
    @testset "bundle layout: NumPy shapes reversed, column-major" begin
        probe = tensors["layout_probe"]            # NumPy (2, 3, 4) with A[a, b, c] = 100a + 10b + c
        @test size(probe) == (4, 3, 2)
        @test all(probe[c + 1, b + 1, a + 1] == 100a + 10b + c for a in 0:1, b in 0:2, c in 0:3)
        @test size(tensors["conv1.weight"]) == (5, 5, 1, 6)     # OIHW (6, 1, 5, 5): Flux's WHIO
        @test size(tensors["conv2.weight"]) == (5, 5, 6, 16)
        @test size(tensors["fc1.weight"]) == (400, 120)         # (out, in) arrives as (in, out)
        @test size(tensors["train_x"]) == (28, 28, 16)          # (N, H, W) arrives as (W, H, N)
        @test eltype(tensors["train_y"]) == Int64
        @test names[1:length(params)] == collect(meta.params)
    end

    model, slots = DLBenchFlux.build(meta.layers, params)
    @testset "model: LeNet-5 from the reference weights" begin
        @test model.layers[1] isa CrossCor                       # no kernel flip
        @test sum(length, Flux.trainables(model)) == 61706
        @test [kind for (_, kind) in slots] == [:conv, :conv, :dense, :dense, :dense]
        back = DLBenchFlux.canonical(model.layers, slots)        # undoes build() exactly
        @test all(back[i] == params[i] for i in eachindex(params))
        @test size(model(zeros(Float32, 28, 28, 1, 3))) == (10, 3)
        # fc1 reads the canonical C, H, W flatten order: feature (w, h, c) lands at w + 5h + 25c.
        f = reshape(collect(Float32, 0:399), 5, 5, 16, 1)
        @test DLBenchFlux.flatten_whcn(f)[1 + 2 + 5 * 3 + 25 * 7] == 2 + 5 * 3 + 25 * 7
    end

    @testset "SpecAdam: bias corrections in Float64, rounded once" begin
        rule = DLBenchFlux.SpecAdam(1e-3, (0.9, 0.999), 1e-8, 0.0)
        for t in (1, 2, 10, 937, 46850)
            step, root2 = DLBenchFlux.bias_scalars(rule, t, Float32)
            @test step === Float32(1e-3 / (1 - 0.9^t))
            @test root2 === Float32(sqrt(1 - 0.999^t))
        end
        # First step on a known gradient: m = 0.1 g, v = 0.001 g^2, update = lr * sign(g) (up to eps).
        x, g = Float32[1, -2, 3], Float32[0.5, -0.25, 2]
        state = Optimisers.setup(rule, x)
        state, x2 = Optimisers.update!(state, x, g)
        @test x2 ≈ Float32[1 - 1f-3, -2 + 1f-3, 3 - 1f-3] rtol = 1e-6
    end

    @testset "one training step against the float64 reference" begin
        state = DLBenchFlux.setup(FIXTURE, "cpu")
        idx = tensors["batch"]                                   # 0-based, as Python hands it over
        out = DLBenchFlux.probe_step(state, idx)
        loss, logits, grads = out[1], out[2], collect(out[3:end])
        want = tensors["expect_loss"][1]
        @test abs(loss - want) / abs(want) <= 1e-5
        wl = tensors["expect_logits"]                            # NumPy (batch, 10) arrives as (10, batch)
        @test size(logits) == size(wl)
        @test maximum(abs.(logits .- wl)) / max(1.0, maximum(abs.(wl))) <= 1e-5
        @test relnorm(grads, [tensors["expect_grad:" * n] for n in meta.params]) <= 1e-4
        @test all(collect(DLBenchFlux.parameters(state)) .== params)  # probe_step did not update

        DLBenchFlux.set_order!(state, reshape(idx, 1, :))      # NumPy (steps = 1, batch)
        loss_sum, correct, steps = DLBenchFlux.train_epoch!(state)
        @test steps == 1
        @test loss_sum ≈ loss rtol = 1e-6
        @test 0 <= correct <= length(idx)
        after = collect(DLBenchFlux.parameters(state))
        @test relnorm(after, [tensors["expect_param:" * n] for n in meta.params]) <= 1e-5
        @test 0 <= DLBenchFlux.evaluate(state) <= 16
        @test DLBenchFlux.synchronize!(state) === nothing
    end

    @testset "set_state! and adam_state: the gate's state, t steps taken" begin
        state = DLBenchFlux.setup(FIXTURE, "cpu")
        n = length(params)
        fresh = DLBenchFlux.adam_state(state)                   # (t, m..., v...)
        @test fresh[1] == 0 && length(fresh) == 1 + 2n && all(a -> iszero(a), fresh[2:end])
        @test all(size(fresh[1 + i]) == size(params[i]) for i in 1:n)   # bundle layout, as parameters
        w = [p .+ 0.01f0 for p in params]
        m = [fill(Float32(1e-3 * i), size(p)) for (i, p) in enumerate(params)]
        v = [fill(Float32(1e-6 * i), size(p)) for (i, p) in enumerate(params)]
        pnames = [String(x) for x in meta.params]
        named = [pnames .=> w; ("m:" .* pnames) .=> m; ("v:" .* pnames) .=> v]
        DLBenchFlux.set_state!(state, write_bundle(mktempdir(), named, pnames), 7)
        loaded = DLBenchFlux.adam_state(state)
        @test loaded[1] == 7
        @test all(loaded[1 + i] == m[i] && loaded[1 + n + i] == v[i] for i in 1:n)
        @test all(collect(DLBenchFlux.parameters(state)) .== w)

        # The next update is step 8 (bias corrections 1 - beta^8), from the loaded moments.
        idx = tensors["batch"]
        g = collect(DLBenchFlux.probe_step(state, idx)[3:end])
        sp = meta.spec
        b1, b2, lr, eps = Float64(sp.beta1), Float64(sp.beta2), Float64(sp.learning_rate), Float64(sp.eps)
        function expected_update(t)
            return map(1:n) do i
                gi = Float64.(g[i])
                mt = b1 .* m[i] .+ (1 - b1) .* gi
                vt = b2 .* v[i] .+ (1 - b2) .* gi .^ 2
                -(lr / (1 - b1^t)) .* mt ./ (sqrt.(vt) ./ sqrt(1 - b2^t) .+ eps)
            end
        end
        DLBenchFlux.set_order!(state, reshape(idx, 1, :))
        DLBenchFlux.train_epoch!(state)
        dw = [Float64.(a) .- Float64.(b) for (a, b) in zip(DLBenchFlux.parameters(state), w)]
        @test relnorm(dw, expected_update(8)) <= 1e-4
        @test relnorm(dw, expected_update(1)) > 1e-2          # t was not dropped
        @test DLBenchFlux.adam_state(state)[1] == 8
    end

    @testset "build_info" begin
        info = DLBenchFlux.build_info("cpu")
        @test occursin("\"julia_threads\"", info) && occursin("\"blas_threads\"", info)
    end
end
