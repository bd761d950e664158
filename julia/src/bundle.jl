# The tensor bundle runner/backends/julia_bundle.py writes: manifest.json + tensors.bin.
#
# NumPy writes arrays in C order (last index fastest); Julia arrays are column-major (first index
# fastest). Reading the same bytes into an Array whose dimensions are the NumPy shape reversed
# needs no copy and gives
#
#     J[i_k, ..., i_2, i_1] == A[i_1, i_2, ..., i_k]        (1-based on the left, 0-based on the right)
#
# so images (N, H, W) arrive as (W, H, N), i.e. Flux's WHCN once a channel axis is added; conv
# kernels OIHW arrive as (W, H, I, O), exactly the layout of Flux's CrossCor/Conv weights; a dense
# weight (out, in) arrives as (in, out) and is transposed once (model.jl). Arrays handed back to
# Python follow the same convention, so Python reverses their axes and has the canonical layout.

const FORMAT = "dlbench-tensors/1"
const DTYPES = Dict("float32" => Float32, "float64" => Float64, "int64" => Int64, "uint8" => UInt8)

"""
    read_bundle(dir) -> (meta, tensors::Dict{String,Array}, names::Vector{String})

The manifest as a JSON3 object, every tensor (dimensions reversed, see above) and the tensor names
in the order they were written (the canonical parameter order for the weights).
"""
function read_bundle(dir::AbstractString)
    meta = JSON3.read(read(joinpath(dir, "manifest.json"), String))
    meta.format == FORMAT || error("$dir: format $(meta.format), this DLBenchFlux reads $FORMAT")
    # The bytes are little-endian; so is every machine Julia runs dlbench on, but say so if not.
    meta.byte_order == "little" && ENDIAN_BOM == 0x04030201 ||
        error("$dir: byte order $(meta.byte_order) on a $(ENDIAN_BOM == 0x04030201 ? "little" : "big")-endian host")
    tensors = Dict{String,Array}()
    names = String[]
    open(joinpath(dir, "tensors.bin")) do io
        for t in meta.tensors
            T = DTYPES[String(t.dtype)]
            dims = Tuple(reverse([Int(d) for d in t.shape]))
            a = Array{T}(undef, dims)
            seek(io, Int(t.offset))
            read!(io, a)
            name = String(t.name)
            tensors[name] = a
            push!(names, name)
        end
    end
    return meta, tensors, names
end
