// Host emulation of the fused CUDA kernel (test only: tests/test_kernel_emulation.py builds it with a C++ compiler).
//
// Runs adacof_kernel_body.h's synthesis_thread -- the code every thread of the device kernel runs -- for every
// thread of every launch that launch_synthesis (adacof_kernels.cu) would make, with the same choice of compiled
// kernel (K = 5 / 11 / run-time K, vector or scalar loads), and a host memory policy that
//   * emulates the device intrinsics (saturating float->int with NaN -> 0, max(min(a, b), 0), max(a + b, c));
//   * checks every access: inside the tensor it belongs to (an out-of-bounds gather, map read or store fails the
//     run), and every vector load/store aligned as the device requires (a misaligned one fails the run).
// This checks the kernel's indexing, border handling, channel passes and arithmetic on a machine without a GPU;
// what it cannot check (the device intrinsics themselves, the launch configuration) tests/test_plugin_gpu.py does.
#include "adacof_kernel_body.h"
#include "adacof_kernels.h"
#include "adacof_kernels_internal.h"

#include <cuda_fp16.h>

#include <climits>
#include <cmath>
#include <cstdint>

namespace
{

using sfadacof::body::kPix;

struct Range
{
    uintptr_t lo = 0, hi = 0;
};
// The buffers of the current run (one run at a time: the test calls it from one thread).
Range g_ranges[10];
int g_fault = 0; // 1: out of bounds, 2: misaligned vector access

void check(void const* p, size_t bytes, size_t align)
{
    uintptr_t const a = reinterpret_cast<uintptr_t>(p);
    bool inside = false;
    for (Range const& r : g_ranges)
    {
        inside = inside || (a >= r.lo && a + bytes <= r.hi);
    }
    if (!inside)
    {
        g_fault = g_fault ? g_fault : 1;
    }
    if (a % align != 0)
    {
        g_fault = g_fault ? g_fault : 2;
    }
}

float to_f(float x)
{
    return x;
}
float to_f(__half x)
{
    return __half2float(x);
}

struct HostMem
{
    template <class T>
    static float stream(T const* p)
    {
        check(p, sizeof(T), sizeof(T));
        return to_f(*p);
    }
    template <class T>
    static void stream4(T const* p, float (&v)[kPix])
    {
        check(p, kPix * sizeof(T), kPix * sizeof(T));
        for (int x = 0; x < kPix; ++x)
        {
            v[x] = to_f(p[x]);
        }
    }
    template <class T>
    static float gather(T const* p)
    {
        check(p, sizeof(T), sizeof(T));
        return to_f(*p);
    }
    static void store(float* p, float v)
    {
        check(p, sizeof(float), sizeof(float));
        *p = v;
    }
    static void store(__half* p, float v)
    {
        check(p, sizeof(__half), sizeof(__half));
        *p = __float2half_rn(v);
    }
    template <class T>
    static void store4(T* p, float const (&v)[kPix])
    {
        check(p, kPix * sizeof(T), kPix * sizeof(T));
        for (int x = 0; x < kPix; ++x)
        {
            store(p + x, v[x]);
        }
    }
    // PTX cvt.rzi.s32.f32: toward zero, saturating, NaN -> 0.
    static int f2i_rz(float x)
    {
        if (std::isnan(x))
        {
            return 0;
        }
        if (x >= 2147483648.0f)
        {
            return INT_MAX;
        }
        if (x <= -2147483648.0f)
        {
            return INT_MIN;
        }
        return static_cast<int>(x);
    }
    // PTX cvt.rzi.s16.f32: the same, saturating to [-32768, 32767].
    static int f2i16_rz(float x)
    {
        int const v = f2i_rz(x);
        return v > 32767 ? 32767 : (v < -32768 ? -32768 : v);
    }
    static int add_min(int a, int b, int c)
    {
        int const s = static_cast<int>(static_cast<uint32_t>(a) + static_cast<uint32_t>(b));
        return s < c ? s : c;
    }
    static int add_min_relu(int a, int b, int c)
    {
        int const m = add_min(a, b, c);
        return m > 0 ? m : 0;
    }
    static int relu_min(int a, int b)
    {
        int const m = a < b ? a : b;
        return m > 0 ? m : 0;
    }
    static int add_max(int a, int b, int c)
    {
        // The device adds with 32-bit wrap-around.
        int const s = static_cast<int>(static_cast<uint32_t>(a) + static_cast<uint32_t>(b));
        return s > c ? s : c;
    }
    template <class T>
    static T const* opaque(T const* p)
    {
        return p;
    }
};

constexpr int kMaxGrid = 65535;

template <class T, class TO, int KC, bool Vec>
void run_all(sfadacof::SynthesisLaunch const& p)
{
    using namespace sfadacof;
    SynthesisShape const s{p.B, p.C, p.H, p.W, p.kernel_size, p.dilation};
    SynthesisTensors<T, TO> const t{static_cast<T const*>(p.frame0), static_cast<T const*>(p.frame2),
        static_cast<T const*>(p.weight1), static_cast<TO const*>(p.alpha1), static_cast<TO const*>(p.beta1),
        static_cast<T const*>(p.weight2), static_cast<TO const*>(p.alpha2), static_cast<TO const*>(p.beta2),
        static_cast<T const*>(p.occlusion), static_cast<T*>(p.out)};
    // The launches of launch_all (adacof_kernels.cu) and, inside each, every thread with j0 < W.
    for (int c0 = 0; c0 < p.C; c0 += body::kCh)
    {
        for (int b0 = 0; b0 < p.B; b0 += kMaxGrid)
        {
            for (int row0 = 0; row0 < p.H; row0 += kMaxGrid)
            {
                int const rows = p.H - row0 < kMaxGrid ? p.H - row0 : kMaxGrid;
                int const batches = p.B - b0 < kMaxGrid ? p.B - b0 : kMaxGrid;
                for (int bz = 0; bz < batches; ++bz)
                {
                    for (int by = 0; by < rows; ++by)
                    {
                        for (int j0 = 0; j0 < p.W; j0 += kPix)
                        {
                            body::synthesis_thread<KC, Vec, HostMem>(t, s, c0, row0 + by, b0 + bz, j0);
                        }
                    }
                }
            }
        }
    }
}

template <class T, class TO>
int run_typed(sfadacof::SynthesisLaunch const& p, int32_t* used_vector)
{
    void const* const tensors[] = {p.frame0, p.frame2, p.weight1, p.weight2, p.occlusion, p.out};
    void const* const offsets[] = {p.alpha1, p.beta1, p.alpha2, p.beta2};
    bool const vec = sfadacof::body::vector_ok(tensors, 6, offsets, sizeof(T), sizeof(TO), p.W);
    // As launch_typed: compiled K only for frames within the 16-bit coordinate range; the run-time-K kernel
    // always loads scalars.
    int const limit = sfadacof::body::kNarrowMax - sfadacof::adacof_kernel_pad(p.kernel_size, p.dilation);
    int const k = p.H <= limit && p.W <= limit ? p.kernel_size : 0;
    *used_vector = (vec && (k == 5 || k == 11) ? 1 : 0) | (k != 0 ? 2 : 0);
    switch (k)
    {
    case 5: vec ? run_all<T, TO, 5, true>(p) : run_all<T, TO, 5, false>(p); break;
    case 11: vec ? run_all<T, TO, 11, true>(p) : run_all<T, TO, 11, false>(p); break;
    default: run_all<T, TO, 0, false>(p); break;
    }
    return 0;
}

} // namespace

extern "C" {

// Arguments as sfadacof_cuda_synthesis, on host memory, plus the byte size of each of the 10 buffers (in the
// order frame0, frame2, weight1, alpha1, beta1, weight2, alpha2, beta2, occlusion, out). Returns 0, a
// SFADACOF_CUDA_* code, 1001 (an access outside every buffer) or 1002 (a misaligned vector access);
// *used_vector: bit 0 the vector-load kernel was chosen, bit 1 a compiled-K kernel (16-bit tap coordinates).
__attribute__((visibility("default"))) int32_t sfadacof_emulate_synthesis(void const* frame0, void const* frame2,
    void const* weight1, void const* alpha1, void const* beta1, void const* weight2, void const* alpha2,
    void const* beta2, void const* occlusion, void* out, int32_t type, int32_t offset_type, int32_t B, int32_t C,
    int32_t H, int32_t W, int32_t kernel_size, int32_t dilation, int64_t const* sizes, int32_t* used_vector)
{
    using namespace sfadacof;
    SynthesisLaunch const p = detail::make_launch(frame0, frame2, weight1, alpha1, beta1, weight2, alpha2, beta2,
        occlusion, out, type, offset_type, B, C, H, W, kernel_size, dilation);
    int32_t const status = detail::check_launch(p);
    *used_vector = 0;
    if (status != 0 || detail::is_empty(p))
    {
        return status;
    }
    void const* const ptrs[] = {frame0, frame2, weight1, alpha1, beta1, weight2, alpha2, beta2, occlusion, out};
    for (int q = 0; q < 10; ++q)
    {
        g_ranges[q].lo = reinterpret_cast<uintptr_t>(ptrs[q]);
        g_ranges[q].hi = g_ranges[q].lo + static_cast<uintptr_t>(sizes[q]);
    }
    g_fault = 0;
    if (p.type == TensorType::kFloat32)
    {
        run_typed<float, float>(p, used_vector);
    }
    else if (p.offset_type == TensorType::kFloat32)
    {
        run_typed<__half, float>(p, used_vector);
    }
    else
    {
        run_typed<__half, __half>(p, used_vector);
    }
    return g_fault ? 1000 + g_fault : 0;
}

} // extern "C"
