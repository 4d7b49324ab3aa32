// The per-pixel arithmetic of the AdaCoF synthesis op, written once for the CUDA kernels (adacof_kernels.cu) and
// the C++ CPU kernel (adacof_cpu.cpp). Contract: ../shared/spec/MODEL.md, "The AdaCoF synthesis op", read through
// plugins/README.md ("The op").
//
// For one output pixel (b, i, j) and one direction (frame F of H x W, maps W/alpha/beta with K*K channels):
//
//   out[c] = sum_{k=0..K-1} sum_{l=0..K-1} W[kK+l] * S_c(k, l)          (k outer, l inner, fp32, in this order)
//   A = trunc(alpha), E = trunc(beta)                                    (toward zero, as C's int cast)
//   fa = alpha - A, fe = beta - E                                        (in (-1, 1))
//   r0 = clamp(i + k*d + A - pad, 0, H-1),  r1 = clamp(i + k*d + A + 1 - pad, 0, H-1)
//   c0 = clamp(j + l*d + E - pad, 0, W-1),  c1 = clamp(j + l*d + E + 1 - pad, 0, W-1)
//   S_c = F[r0,c0](1-fa)(1-fe) + F[r1,c0] fa (1-fe) + F[r0,c1](1-fa) fe + F[r1,c1] fa fe
//
// with pad = ((K-1)*d)/2. This is the spec's formula on the replication-padded frame P (Hp = H + 2*pad), because
// P[clamp(x, 0, Hp-1)] = F[clamp(x - pad, 0, H-1)] per axis; the output has the frame's size exactly when (K-1)*d
// is even, the only case accepted (adacof_params_valid). The fused op blends the two directions:
//
//   frame1 = V * o1 + (1 - V) * o2
//
// Offsets, fractional parts, bilinear weights and accumulators are fp32 whatever the tensor type. Offsets are
// clamped to +-kMaxOffset before the integer conversion (beyond 2^24 an fp32 value is an integer and every index
// clamps to the border anyway, so finite offsets give the formula's value); a NaN or infinite offset makes that
// tap's contribution NaN, as the formula does, instead of an undefined float->int conversion.
#pragma once

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define SFADACOF_HD __host__ __device__ __forceinline__
#else
#define SFADACOF_HD inline
#endif

namespace sfadacof
{

// Guards against corrupt attributes; far above every released variant (K = 5 or 11, d = 1). Mirrors
// plugins/onnx_node.py (MAX_KERNEL_SIZE, MAX_DILATION).
constexpr int kMaxKernelSize = 64;
constexpr int kMaxDilation = 64;
// Channels accumulated per pass over the maps (frames have 3). More channels are handled in several passes.
constexpr int kChannelsPerPass = 4;
constexpr float kMaxOffset = 16777216.0f; // 2^24

SFADACOF_HD bool adacof_params_valid(int kernel_size, int dilation)
{
    return kernel_size >= 1 && kernel_size <= kMaxKernelSize && dilation >= 1 && dilation <= kMaxDilation
        && ((kernel_size - 1) * dilation) % 2 == 0;
}

SFADACOF_HD int adacof_kernel_pad(int kernel_size, int dilation)
{
    return ((kernel_size - 1) * dilation) / 2;
}

SFADACOF_HD int clamp_index(int x, int hi)
{
    return x < 0 ? 0 : (x > hi ? hi : x);
}

// Truncation toward zero of an offset: returns A = trunc(v) as int and sets frac = v - A (NaN for a non-finite v).
SFADACOF_HD int split_offset(float v, float& frac)
{
    // fmaxf/fminf map NaN to the other operand, so vc is always finite and the int conversion is defined.
    float const vc = fminf(fmaxf(v, -kMaxOffset), kMaxOffset);
    int const whole = static_cast<int>(vc); // C conversion truncates toward zero
    // (v - v) is +0 for finite v and NaN for NaN/inf: it carries a non-finite offset into the result.
    frac = (vc - static_cast<float>(whole)) + (v - v);
    return whole;
}

// The four clamped corner indices (row * W + col within one plane) and the fractional parts of one tap.
struct TapCorners
{
    int i00, i10, i01, i11; // (r0,c0), (r1,c0), (r0,c1), (r1,c1)
    float fa, fe;
};

// row_base = i + k*d - pad, col_base = j + l*d - pad.
SFADACOF_HD TapCorners tap_corners(int row_base, int col_base, float alpha, float beta, int H, int W)
{
    TapCorners t;
    int const A = split_offset(alpha, t.fa);
    int const E = split_offset(beta, t.fe);
    int const r = row_base + A;
    int const c = col_base + E;
    int const r0 = clamp_index(r, H - 1) * W;
    int const r1 = clamp_index(r + 1, H - 1) * W;
    int const c0 = clamp_index(c, W - 1);
    int const c1 = clamp_index(c + 1, W - 1);
    t.i00 = r0 + c0;
    t.i10 = r1 + c0;
    t.i01 = r0 + c1;
    t.i11 = r1 + c1;
    return t;
}

// S for one channel plane, term order and grouping as the spec writes it.
SFADACOF_HD float bilinear(float p00, float p10, float p01, float p11, float fa, float fe)
{
    float const ga = 1.0f - fa;
    float const ge = 1.0f - fe;
    return p00 * ga * ge + p10 * fa * ge + p01 * ga * fe + p11 * fa * fe;
}

// The blend of the two directions, in the spec's form.
SFADACOF_HD float blend(float v, float o1, float o2)
{
    return v * o1 + (1.0f - v) * o2;
}

// One direction for one pixel, channels [c_begin, c_begin + nc) with nc <= kChannelsPerPass, added into acc.
//
// Loader supplies the memory reads (so the CUDA kernels can use streaming / read-only cache loads):
//   float Loader::map(MapT const* p)      -- a weight map element (read once)
//   float Loader::off(OffT const* p)      -- an alpha/beta element (read once)
//   float Loader::frame(FrameT const* p)  -- a frame element (gathered, re-read by neighbours)
// frame: the (b, 0) plane of the frame; maps: the (b, 0, i, j) elements of W / alpha / beta.
// KC > 0 fixes the kernel size at compile time (full unrolling); KC == 0 uses kernel_size.
template <int KC, class Loader, class FrameT, class MapT, class OffT>
SFADACOF_HD void accumulate_direction(FrameT const* frame, size_t frame_plane, int c_begin, int nc, int H, int W,
    MapT const* weight, OffT const* alpha, OffT const* beta, size_t map_plane, int kernel_size, int dilation, int i,
    int j, float (&acc)[kChannelsPerPass])
{
    int const K = KC > 0 ? KC : kernel_size;
    int const pad = adacof_kernel_pad(K, dilation);
    FrameT const* planes = frame + static_cast<size_t>(c_begin) * frame_plane;
#if defined(__CUDACC__)
#pragma unroll
#endif
    for (int k = 0; k < (KC > 0 ? KC : K); ++k)
    {
        int const row_base = i + k * dilation - pad;
#if defined(__CUDACC__)
#pragma unroll
#endif
        for (int l = 0; l < (KC > 0 ? KC : K); ++l)
        {
            size_t const t = static_cast<size_t>(k * K + l) * map_plane;
            float const w = Loader::map(weight + t);
            TapCorners const q
                = tap_corners(row_base, j + l * dilation - pad, Loader::off(alpha + t), Loader::off(beta + t), H, W);
#if defined(__CUDACC__)
#pragma unroll
#endif
            for (int c = 0; c < kChannelsPerPass; ++c)
            {
                if (c < nc)
                {
                    FrameT const* p = planes + static_cast<size_t>(c) * frame_plane;
                    acc[c] += w
                        * bilinear(Loader::frame(p + q.i00), Loader::frame(p + q.i10), Loader::frame(p + q.i01),
                            Loader::frame(p + q.i11), q.fa, q.fe);
                }
            }
        }
    }
}

// Tensors of the fused op, all NCHW contiguous: frames and output (B, C, H, W), maps (B, K*K, H, W),
// occlusion (B, 1, H, W).
template <class FrameT, class OffT>
struct SynthesisTensors
{
    FrameT const* frame0;
    FrameT const* frame2;
    FrameT const* weight1;
    OffT const* alpha1;
    OffT const* beta1;
    FrameT const* weight2;
    OffT const* alpha2;
    OffT const* beta2;
    FrameT const* occlusion;
    FrameT* out;
};

struct SynthesisShape
{
    int B, C, H, W, kernel_size, dilation;
};

// The fused op for one pixel (b, i, j), channels [c_begin, c_begin + nc): out_px[c] = V*o1 + (1-V)*o2.
template <int KC, class Loader, class FrameT, class OffT>
SFADACOF_HD void synthesis_pixel(SynthesisTensors<FrameT, OffT> const& t, SynthesisShape const& s, int b, int i,
    int j, int c_begin, int nc, float (&out_px)[kChannelsPerPass])
{
    size_t const plane = static_cast<size_t>(s.H) * static_cast<size_t>(s.W);
    size_t const pix = static_cast<size_t>(i) * static_cast<size_t>(s.W) + static_cast<size_t>(j);
    size_t const frame_off = static_cast<size_t>(b) * static_cast<size_t>(s.C) * plane;
    size_t const map_off = static_cast<size_t>(b) * static_cast<size_t>(s.kernel_size * s.kernel_size) * plane + pix;
    float o1[kChannelsPerPass];
    float o2[kChannelsPerPass];
    for (int c = 0; c < kChannelsPerPass; ++c)
    {
        o1[c] = 0.0f;
        o2[c] = 0.0f;
    }
    accumulate_direction<KC, Loader>(t.frame0 + frame_off, plane, c_begin, nc, s.H, s.W, t.weight1 + map_off,
        t.alpha1 + map_off, t.beta1 + map_off, plane, s.kernel_size, s.dilation, i, j, o1);
    accumulate_direction<KC, Loader>(t.frame2 + frame_off, plane, c_begin, nc, s.H, s.W, t.weight2 + map_off,
        t.alpha2 + map_off, t.beta2 + map_off, plane, s.kernel_size, s.dilation, i, j, o2);
    float const v = Loader::map(t.occlusion + static_cast<size_t>(b) * plane + pix);
    for (int c = 0; c < kChannelsPerPass; ++c)
    {
        out_px[c] = blend(v, o1[c], o2[c]);
    }
}

} // namespace sfadacof
