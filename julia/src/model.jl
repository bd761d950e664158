# The model, built from the layer list Python sends (runner/workload/models.py, one dict per layer:
# kind = conv|dense|relu|maxpool|flatten) and the reference weights in canonical order.
#
# Layouts (see bundle.jl for how the bytes arrive):
# - data: WHCN. Images (N, H, W) arrive as (W, H, N) and get a channel axis: (W, H, 1, N).
# - conv: CrossCor, not Conv. Flux's Conv flips the kernel (a true convolution); every other
#   framework and the spec compute a cross-correlation. The OIHW kernel arrives as (W, H, I, O),
#   Flux's weight layout, so it is used as it is. Width and height are both swapped relative to
#   NCHW, in the data and in the kernel alike, so the cross-correlation sums the same products.
# - dense: Flux's Dense weight is out × in; it arrives as (in, out) and is transposed once.
# - flatten: the features before fc1 are (W, H, C, N) in Julia. Reshaping column-major to
#   (W*H*C, N) numbers them w + W*h + W*H*c (0-based), which is exactly the canonical NCHW flatten
#   index c*H*W + h*W + w. So fc1 needs no row permutation here (TensorFlow and JAX, flattening
#   NHWC as (h, w, c), do need one: runner/workload/layouts.py).
# - ReLU right after a conv or dense layer becomes that layer's activation (Flux fuses bias and
#   activation); a ReLU anywhere else is its own broadcast layer.

"Flatten (W, H, C, N) to (W*H*C, N): the canonical C, H, W feature order (see above)."
flatten_whcn(x::AbstractArray) = reshape(x, :, size(x, ndims(x)))

"""
    build(layers, params::Vector) -> (model::Chain, slots::Vector{Tuple{Int,Symbol}})

`params` are the canonical tensors in bundle layout (weight, bias per conv/dense layer, in order).
`slots` lists (index in the Chain, :conv or :dense) for every layer with parameters, in canonical
order, so weights and gradients can be handed back in that order.
"""
function build(layers, params::Vector)
    out = Any[]
    slots = Tuple{Int,Symbol}[]
    k = 0
    i = 1
    while i <= length(layers)
        kind = String(layers[i].kind)
        if kind == "conv" || kind == "dense"
            w, b = params[k + 1], params[k + 2]
            k += 2
            fused = i < length(layers) && String(layers[i + 1].kind) == "relu"
            act = fused ? relu : identity
            if kind == "conv"
                push!(out, CrossCor(copy(w), copy(b), act; pad = Int(layers[i].pad)))
            else
                push!(out, Dense(permutedims(w), copy(b), act))
            end
            push!(slots, (length(out), Symbol(kind)))
            i += fused ? 2 : 1
            continue
        elseif kind == "relu"
            push!(out, Base.Fix1(broadcast, relu))
        elseif kind == "maxpool"
            s = Int(layers[i].size)
            push!(out, MaxPool((s, s)))
        elseif kind == "flatten"
            push!(out, flatten_whcn)
        else
            error("unknown layer kind $kind")
        end
        i += 1
    end
    k == length(params) || error("the layer list uses $k of $(length(params)) parameter tensors")
    return Chain(out...), slots
end

"""
    flux_layout(kind, field, a)

A canonical tensor in bundle layout as Flux holds it in a `kind` (:conv or :dense) layer's `field`
(:weight or :bias): dense weights transposed (as `build` does), everything else as it is.
"""
flux_layout(kind::Symbol, field::Symbol, a::AbstractArray) =
    kind === :dense && field === :weight ? permutedims(a) : a

"""
    canonical(layers_or_grads, slots) -> Vector{Array}

Weights (a Chain's `layers`) or gradients (the `layers` field of a Zygote gradient of a Chain) as
host arrays in canonical order and bundle layout: conv kernels as they are, dense weights
transposed back to (in, out), biases as they are.
"""
function canonical(layers, slots)
    out = Array[]
    for (i, kind) in slots
        l = layers[i]
        w, b = Array(l.weight), Array(l.bias)
        push!(out, kind === :dense ? permutedims(w) : w, b)
    end
    return out
end
