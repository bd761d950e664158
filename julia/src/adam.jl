# Adam as the dlbench spec defines it.
#
# Why not Optimisers.Adam: in Optimisers 0.4.8 (src/rules.jl) the state keeps beta^t as a running
# product in the parameters' element type (`βt .* β` every step, Float32 here) and the update uses
# `1 - βt` in that type, starting from β rounded to Float32 (0.999f0 = 0.99900001...). Emulated in
# NumPy float32, its 1 - β2^t is off by up to 2.7e-5 relative (t = 3; 8e-6 at t = 937), against
# 5e-8 when computed in Float64 and rounded once: the spec rule ("Adam's bias corrections are
# computed in float64 and rounded to float32 once") does not hold for Optimisers.Adam. SpecAdam keeps the step count instead and
# computes every scalar in Float64, rounding each to Float32 once, in PyTorch's form
# (torch.optim.Adam, single-tensor path):
#
#     m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2
#     x -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
#
# with L2 weight decay folded into g as torch does (the spec's weight_decay, 0 by default).

"""
    SpecAdam(eta, (beta1, beta2), epsilon, weight_decay)

An Optimisers.jl rule: use it with `Optimisers.setup` and `Optimisers.update!` like Optimisers.Adam.
"""
struct SpecAdam <: Optimisers.AbstractRule
    eta::Float64
    beta::Tuple{Float64,Float64}
    epsilon::Float64
    weight_decay::Float64
end

# State: first moment, second moment, steps taken so far.
Optimisers.init(::SpecAdam, x::AbstractArray) = (zero(x), zero(x), 0)

"""
    bias_scalars(rule, t, T) -> (step, root2)

lr / (1 - beta1^t) and sqrt(1 - beta2^t), computed in Float64 and rounded to T once.
"""
function bias_scalars(o::SpecAdam, t::Integer, ::Type{T}) where {T}
    b1, b2 = o.beta
    return T(o.eta / (1 - b1^t)), T(sqrt(1 - b2^t))
end

function Optimisers.apply!(o::SpecAdam, state, x::AbstractArray{T}, dx) where {T}
    mt, vt, t = state
    t += 1
    b1, b2 = o.beta
    beta1, beta2 = T(b1), T(b2)
    one_b1, one_b2 = T(1 - b1), T(1 - b2)   # 1 - beta in Float64, rounded once (torch: Python floats)
    step, root2 = bias_scalars(o, t, T)
    eps = T(o.epsilon)
    g = iszero(o.weight_decay) ? dx : dx .+ T(o.weight_decay) .* x
    @. mt = beta1 * mt + one_b1 * g
    @. vt = beta2 * vt + one_b2 * abs2(g)
    dx′ = @. step * mt / (sqrt(vt) / root2 + eps)
    return (mt, vt, t), dx′
end
