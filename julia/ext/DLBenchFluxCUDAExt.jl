# NVIDIA GPUs: loaded when CUDA.jl and cuDNN.jl are (Flux's convolutions on CUDA need cuDNN).
module DLBenchFluxCUDAExt

using CUDA
using cuDNN
using DLBenchFlux

DLBenchFlux.device_adaptor(::Val{:cuda}) = CUDA.cu   # Float32 data stays Float32; Int indices stay Int
DLBenchFlux.synchronize(::Val{:cuda}) = CUDA.synchronize()
DLBenchFlux.functional(::Val{:cuda}) = CUDA.functional()
DLBenchFlux.device_name(::Val{:cuda}) = CUDA.name(CUDA.device())
# The spec is float32: no TF32 tensor-core math (torch and JAX turn it off too).
DLBenchFlux.prepare_device(::Val{:cuda}) = CUDA.math_mode!(CUDA.PEDANTIC_MATH)

end # module
