// The work of one thread of the fused synthesis kernel (adacof_kernels.cu: the kernel the TensorRT plugin runs),
// written once for the device and for a host emulation (plugins/tests/kernel_emulation.cpp, tests/
// test_kernel_emulation.py), which checks this code's indexing and arithmetic on a CPU against the CPU kernel and the
// PyTorch op. The memory accesses and the few device intrinsics come from a policy class Mem:
//   float Mem::stream(T const*)                     a map/offset/occlusion element, read once (streaming)
//   void  Mem::stream4(T const*, float (&)[4])      4 consecutive elements, one aligned vector load
//   float Mem::gather(T const*)                     a frame element (re-read by neighbours: read-only cache)
//   void  Mem::store(T*, float), Mem::store4(T*, float const (&)[4])   output (streaming)
//   int   Mem::f2i_rz(float)                        float -> int toward zero, saturating, NaN -> 0 (PTX cvt.rzi)
//   int   Mem::f2i16_rz(float)                      the same, saturating to 16 bits (PTX cvt.rzi.s16)
//   int   Mem::relu_min(a, b) = max(min(a, b), 0);  Mem::add_max(a, b, c) = max(a + b, c);
//         Mem::add_min(a, b, c) = min(a + b, c);    Mem::add_min_relu(a, b, c) = max(min(a + b, c), 0)
//   T const* Mem::opaque(T const*)                  the pointer, hidden from the optimiser (see the device Mem)
// Design and contract: adacof_kernels.cu's header comment; the formula: adacof_math.h.
#pragma once

#include "adacof_math.h"

#include <stddef.h>

#if defined(__CUDACC__)
#define SFADACOF_PRAGMA(x) _Pragma(#x)
#else
#define SFADACOF_PRAGMA(x)
#endif

namespace sfadacof
{
namespace body
{

constexpr int kPix = 4; // pixels per thread (consecutive j of one row)
constexpr int kCh = 3;  // channels per pass (frames have 3; more channels run in several launches)

// Map/occlusion loads for the 4 pixels: Vec, one aligned vector load; otherwise 4 scalar loads of elements xo[x]
// (the pixel's column, or the row's last column for pixels past its end).
template <bool Vec, class Mem, class T>
SFADACOF_HD void load4(T const* p, float (&v)[kPix], int const (&xo)[kPix])
{
    if (Vec)
    {
        Mem::stream4(p, v);
    }
    else
    {
SFADACOF_PRAGMA(unroll)
        for (int x = 0; x < kPix; ++x)
        {
            v[x] = Mem::stream(p + xo[x]);
        }
    }
}

// Stores of the n <= 4 pixels inside the row (n == 4 with Vec).
template <bool Vec, class Mem, class T>
SFADACOF_HD void store4(T* p, float const (&v)[kPix], int n)
{
    if (Vec)
    {
        Mem::store4(p, v);
    }
    else
    {
SFADACOF_PRAGMA(unroll)
        for (int x = 0; x < kPix; ++x)
        {
            if (x < n)
            {
                Mem::store(p + x, v[x]);
            }
        }
    }
}

// ---- one tap's coordinates along one axis ----
// The formula's A = trunc(v), f = v - A and the clamped pair (clamp(base + A, 0, n-1), clamp(base + A + 1, 0, n-1)),
// computed without integer overflow for every float v:
//   * f = v - truncf(v): NaN for a NaN or infinite v (inf - inf), which carries the formula's NaN into the result;
//     0 for |v| >= 2^23, as the formula has;
//   * Narrow (the compiled K = 5 / 11 kernels, launched when H, W <= kNarrowMax - pad): x = trunc(v) saturated to
//     16 bits (one F2I.S16 on the device; NaN -> 0). A saturated x differs from A only where both clamp to the
//     same border: 32767 + base >= n - 1 and -32768 + base + 1 <= 0 for every base in [-pad, n - 1 + pad]. Then
//     lo = max(min(x + base, n - 1), 0) and hi = max(min(x + base, n - 2) + 1, 0) (= clamp(x + base + 1, 0, n - 1))
//     are one and two add-min/max instructions (VIADDMNMX), with no overflow;
//   * otherwise x = (int)(t + base) saturating to 32 bits (PTX cvt.rzi; NaN -> 0; t + base exact while |t| < 2^24,
//     beyond which every index clamps to the border anyway), lo = clamp(x, 0, n - 1) and
//     hi = max(min(x, n - 2) + 1, 0), again without computing x + 1 (overflow at x = INT_MAX).
constexpr int kNarrowMax = 32768;

struct Axis
{
    int lo, hi;
    float f;
};
template <class Mem, bool Narrow>
SFADACOF_HD Axis axis(float v, int base, int n)
{
    Axis a;
    float const t = truncf(v);
    a.f = v - t;
    if (Narrow)
    {
        int const x = Mem::f2i16_rz(v);
        a.lo = Mem::add_min_relu(x, base, n - 1);
        a.hi = Mem::add_max(Mem::add_min(x, base, n - 2), 1, 0);
    }
    else
    {
        int const x = Mem::f2i_rz(t + static_cast<float>(base));
        a.lo = Mem::relu_min(x, n - 1);
        a.hi = Mem::add_max(x < n - 2 ? x : n - 2, 1, 0);
    }
    return a;
}

// One direction for the 4 pixels (i, j0 .. j0+3), channel planes g0..g2: acc[x][c] += sum over taps.
// weight/alpha/beta point at the (b, 0, i, j0) elements; plane = H * W. The scalar path's pixels past the row's end
// compute the last column instead (their results are not stored).
template <int KC, bool Vec, class Mem, class T, class TO>
SFADACOF_HD void direction(T const* __restrict__ g0, T const* __restrict__ g1, T const* __restrict__ g2,
    T const* __restrict__ weight, TO const* __restrict__ alpha, TO const* __restrict__ beta, int plane, int H, int W,
    int K, int d, int i, int j0, float (&acc)[kPix][kCh])
{
    T const* const f0 = Mem::opaque(g0);
    T const* const f1 = Mem::opaque(g1);
    T const* const f2 = Mem::opaque(g2);
    int const pad = adacof_kernel_pad(K, d);
    // Per pixel: its element offset from j0 (pixels past the row's end take the last column's) and the column base
    // of tap l = 0, j + 0*d - pad.
    int xo[kPix];
    int cb0[kPix];
SFADACOF_PRAGMA(unroll)
    for (int x = 0; x < kPix; ++x)
    {
        xo[x] = Vec ? x : (x < W - 1 - j0 ? x : W - 1 - j0);
        cb0[x] = j0 + xo[x] - pad;
    }
    ptrdiff_t const tap_stride = plane;
SFADACOF_PRAGMA(unroll(KC == 5 ? 5 : 1))
    for (int k = 0; k < (KC > 0 ? KC : K); ++k)
    {
        int const rb = i + k * d - pad;
        T const* wk = weight + static_cast<ptrdiff_t>(k) * (KC > 0 ? KC : K) * tap_stride;
        TO const* ak = alpha + static_cast<ptrdiff_t>(k) * (KC > 0 ? KC : K) * tap_stride;
        TO const* bk = beta + static_cast<ptrdiff_t>(k) * (KC > 0 ? KC : K) * tap_stride;
SFADACOF_PRAGMA(unroll(KC == 5 ? 5 : 1))
        for (int l = 0; l < (KC > 0 ? KC : K); ++l)
        {
            float w[kPix], a[kPix], b[kPix];
            load4<Vec, Mem>(wk + l * tap_stride, w, xo);
            load4<Vec, Mem>(ak + l * tap_stride, a, xo);
            load4<Vec, Mem>(bk + l * tap_stride, b, xo);
            int const ld = l * d;
SFADACOF_PRAGMA(unroll)
            for (int x = 0; x < kPix; ++x)
            {
                Axis const r = axis<Mem, (KC > 0)>(a[x], rb, H);
                Axis const c = axis<Mem, (KC > 0)>(b[x], cb0[x] + ld, W);
                // Corner weights with w folded in: w(1-fa)(1-fe), w fa (1-fe), w (1-fa) fe, w fa fe.
                float const wfe = w[x] * c.f;
                float const wge = w[x] - wfe;
                float const w10 = r.f * wge;
                float const w00 = wge - w10;
                float const w11 = r.f * wfe;
                float const w01 = wfe - w11;
                int const row0 = r.lo * W;
                int const row1 = r.hi * W;
                int const i00 = row0 + c.lo;
                int const i10 = row1 + c.lo;
                int const i01 = row0 + c.hi;
                int const i11 = row1 + c.hi;
                // One FMA per gathered value, straight into the accumulator.
                T const* const fc[kCh] = {f0, f1, f2};
SFADACOF_PRAGMA(unroll)
                for (int ch = 0; ch < kCh; ++ch)
                {
                    float s = acc[x][ch];
                    s = fmaf(w00, Mem::gather(fc[ch] + i00), s);
                    s = fmaf(w10, Mem::gather(fc[ch] + i10), s);
                    s = fmaf(w01, Mem::gather(fc[ch] + i01), s);
                    s = fmaf(w11, Mem::gather(fc[ch] + i11), s);
                    acc[x][ch] = s;
                }
            }
        }
    }
}

// One thread: the 4 pixels (i, j0 .. j0+3) of batch b, channel pass [c0, c0 + min(3, C - c0)) (channels past C
// re-read the pass's last channel and are not stored), both directions and the blend. Needs j0 < W.
template <int KC, bool Vec, class Mem, class T, class TO>
SFADACOF_HD void synthesis_thread(SynthesisTensors<T, TO> const& t, SynthesisShape const& s, int c0, int i, int b, int j0)
{
    int const K = KC > 0 ? KC : s.kernel_size;
    int const plane = s.H * s.W; // < 2^31 (check_launch)
    int const nc = (s.C - c0 < kCh ? s.C - c0 : kCh);
    ptrdiff_t const frame_off = (static_cast<ptrdiff_t>(b) * s.C + c0) * plane;
    ptrdiff_t const map_off = static_cast<ptrdiff_t>(b) * K * K * plane + static_cast<ptrdiff_t>(i) * s.W + j0;
    ptrdiff_t const p1 = static_cast<ptrdiff_t>((nc > 1 ? 1 : nc - 1)) * plane;
    ptrdiff_t const p2 = static_cast<ptrdiff_t>((nc > 2 ? 2 : nc - 1)) * plane;

    float o1[kPix][kCh], o2[kPix][kCh];
SFADACOF_PRAGMA(unroll)
    for (int x = 0; x < kPix; ++x)
    {
SFADACOF_PRAGMA(unroll)
        for (int c = 0; c < kCh; ++c)
        {
            o1[x][c] = 0.0f;
            o2[x][c] = 0.0f;
        }
    }
    T const* const g0 = t.frame0 + frame_off;
    direction<KC, Vec, Mem>(g0, g0 + p1, g0 + p2, t.weight1 + map_off, t.alpha1 + map_off, t.beta1 + map_off, plane, s.H,
        s.W, K, s.dilation, i, j0, o1);
    T const* const g2 = t.frame2 + frame_off;
    direction<KC, Vec, Mem>(g2, g2 + p1, g2 + p2, t.weight2 + map_off, t.alpha2 + map_off, t.beta2 + map_off, plane, s.H,
        s.W, K, s.dilation, i, j0, o2);

    // The scalar path's pixels past the row's end read the last column's occlusion and are not stored.
    ptrdiff_t const occ_off = static_cast<ptrdiff_t>(b) * plane + static_cast<ptrdiff_t>(i) * s.W;
    int const n = (s.W - j0 < kPix ? s.W - j0 : kPix);
    int xo[kPix];
SFADACOF_PRAGMA(unroll)
    for (int x = 0; x < kPix; ++x)
    {
        xo[x] = Vec ? x : (x < n - 1 ? x : n - 1);
    }
    float v[kPix];
    load4<Vec, Mem>(t.occlusion + occ_off + j0, v, xo);
    T* const out = t.out + frame_off + static_cast<ptrdiff_t>(i) * s.W + j0;
SFADACOF_PRAGMA(unroll)
    for (int c = 0; c < kCh; ++c)
    {
        if (c < nc)
        {
            float r[kPix];
SFADACOF_PRAGMA(unroll)
            for (int x = 0; x < kPix; ++x)
            {
                r[x] = blend(v[x], o1[x][c], o2[x][c]);
            }
            store4<Vec, Mem>(out + static_cast<ptrdiff_t>(c) * plane, r, n);
        }
    }
}

// Whether the vector-load kernel may run: every map/occlusion/output row start aligned to 4 elements (W % 4 == 0
// and every tensor's base aligned; torch and TensorRT allocations are 256-byte aligned).
inline bool vector_ok(void const* const* tensors, int n_tensors, void const* const* offsets, size_t elem,
    size_t offset_elem, int W)
{
    bool ok = W % kPix == 0;
    for (int q = 0; q < n_tensors; ++q)
    {
        ok = ok && reinterpret_cast<size_t>(tensors[q]) % (kPix * elem) == 0;
    }
    for (int q = 0; q < 4; ++q)
    {
        ok = ok && reinterpret_cast<size_t>(offsets[q]) % (kPix * offset_elem) == 0;
    }
    return ok;
}

} // namespace body
} // namespace sfadacof
