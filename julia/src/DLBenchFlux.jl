"""
    DLBenchFlux

The dlbench workload (DESIGN.md: LeNet-5 and the other models of runner/workload/models.py, Adam,
mean softmax cross-entropy) in Flux.jl, driven from Python through juliacall:

    python -m runner run --framework flux        # runner/backends/flux_backend.py calls setup/train_epoch!/...
    python -m runner verify --framework flux     # the parity gate: probe_step, parameters, set_state!, adam_state
    julia --project=julia -e 'using Pkg; Pkg.test()'

Python owns the clock, the batch order and the records (runner/workload/harness.py); this module
only builds the model from the reference weights, trains the batches it is given and evaluates.

Written against Flux 0.16.11, Optimisers 0.4.8, Zygote 0.7, JSON3 1, CUDA.jl 5, Metal.jl 1 and
PythonCall/juliacall 0.9.37, from their sources and docs: the machine it was written on has no Julia.
"""
module DLBenchFlux

using Flux
using JSON3
using LinearAlgebra
using Optimisers
using Zygote

include("bundle.jl")
include("adam.jl")
include("model.jl")
include("device.jl")
include("train.jl")

end # module
