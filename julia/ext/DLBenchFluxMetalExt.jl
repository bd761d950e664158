# Apple GPUs: loaded when Metal.jl is.
module DLBenchFluxMetalExt

using DLBenchFlux
using Metal

DLBenchFlux.device_adaptor(::Val{:metal}) = Metal.mtl
DLBenchFlux.synchronize(::Val{:metal}) = Metal.synchronize()
DLBenchFlux.functional(::Val{:metal}) = Metal.functional()
DLBenchFlux.device_name(::Val{:metal}) = String(Metal.current_device().name)

end # module
