# Device hooks. The CPU methods live here; ext/DLBenchFluxCUDAExt.jl and ext/DLBenchFluxMetalExt.jl
# add :cuda and :metal when CUDA.jl + cuDNN.jl or Metal.jl are loaded.

"A function that moves arrays (and Flux models) to `device`."
device_adaptor(::Val{:cpu}) = identity
device_adaptor(::Val{D}) where {D} =
    error("device $D needs its Julia package loaded: add CUDA and cuDNN (or Metal) to julia/env")

"Block until all queued work on `device` is done (the harness calls it before every clock read)."
synchronize(::Val{:cpu}) = nothing
synchronize(::Val{D}) where {D} = nothing

"Whether `device` can run here (false when its package is not loaded)."
functional(::Val{:cpu}) = true
functional(::Val) = false

"The device's name, or nothing."
device_name(::Val) = nothing

"Once, before the model moves to `device` (e.g. full-precision float32 math on CUDA)."
prepare_device(::Val) = nothing

"(bytes, how it was read) of the device's peak memory, or (nothing, why not)."
peak_memory(::Val{:cpu}) = (nothing, "on the CPU the device memory is host memory: see resources.host.peak_rss_bytes")
peak_memory(::Val{D}) where {D} = (nothing, "DLBenchFlux keeps no peak counter for $D (the NVML sampler does)")
