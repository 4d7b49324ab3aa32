// The CUDA kernel of the fused AdaCoF synthesis op: the one the TensorRT plugin's enqueue launches, and the one
// Python reaches through sfadacof_cuda_synthesis (plugins/cuda_op.py, plugins/benchmark.py). The original-style
// baseline lives in adacof_naive.cu, outside the plugin library.
//
// Contract: docs/MODEL.md "The AdaCoF synthesis op", restated in adacof_math.h (the CPU kernel's arithmetic). The
// per-thread code is adacof_kernel_body.h (shared with the host emulation in plugins/tests/kernel_emulation.cpp).
// This kernel evaluates the same formula with the work arranged for instruction count (issue 22: <= 4,000 SASS
// instructions per output pixel at K = 5; `python -m plugins.sass_report` measures it):
//   * a thread computes kPix = 4 horizontally consecutive pixels of one row, all 3 channels of a pass, both
//     directions and the blend; the tap's coordinates, clamps and bilinear weights are computed once per pixel and
//     shared by the 3 channels;
//   * maps, offsets and occlusion are read once per tap for the 4 pixels with one vector load (fp32: 16 bytes,
//     fp16: 8 bytes) when every tensor is aligned for it and W % 4 == 0 (Vec); otherwise with scalar loads (the
//     same kernel body, instantiated without Vec), so any W works;
//   * the weight w is folded into the four corner weights, so each gathered value costs one FMA, and each gather's
//     address is one wide multiply-add of a 32-bit in-plane index onto a per-channel plane pointer;
//   * offsets, fractions, weights and accumulators are fp32 whatever the tensor type; the integer tap coordinates
//     of the compiled K = 5 / 11 kernels are 16-bit (exact for frames up to 32768 - pad a side: launch_typed);
//   * K = 5 is unrolled completely; K = 11 keeps both tap loops (#pragma unroll 1: unrolling them costs registers,
//     spills and instruction cache for a few loop instructions per 4 pixels); other K run the same loops with K
//     read at run time.
// Results equal the CPU kernel's up to rounding (fold of w into the corner weights, FMA contraction): README
// "Tolerances" (CUDA fp32 vs the PyTorch op 1e-5 abs) is checked by tests/test_plugin_gpu.py on a GPU.
#include "adacof_kernels.h"
#include "adacof_kernel_body.h"
#include "adacof_kernels_internal.h"
#include "adacof_math.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <limits>
#include <stddef.h>

namespace sfadacof
{
namespace
{

using body::kCh;
using body::kPix;
constexpr int kBlock = 64;      // threads per block: 256 pixels of one row
constexpr int kMaxGrid = 65535; // grid y / z limit: rows and batch beyond it run in further launches

__device__ __forceinline__ float to_f(float x)
{
    return x;
}
__device__ __forceinline__ float to_f(__half x)
{
    return __half2float(x);
}

// The device side of adacof_kernel_body.h's memory policy. Maps, offsets and occlusion are read exactly once:
// streaming loads (evict-first), so they do not push the frames, which neighbouring threads gather again, out of
// L1/L2; frames through the read-only data cache.
struct DeviceMem
{
    template <class T>
    __device__ __forceinline__ static float stream(T const* p)
    {
        return to_f(__ldcs(p));
    }
    __device__ __forceinline__ static void stream4(float const* p, float (&v)[kPix])
    {
        float4 const q = __ldcs(reinterpret_cast<float4 const*>(p));
        v[0] = q.x;
        v[1] = q.y;
        v[2] = q.z;
        v[3] = q.w;
    }
    __device__ __forceinline__ static void stream4(__half const* p, float (&v)[kPix])
    {
        uint2 const q = __ldcs(reinterpret_cast<uint2 const*>(p));
        float2 const a = __half22float2(*reinterpret_cast<__half2 const*>(&q.x));
        float2 const b = __half22float2(*reinterpret_cast<__half2 const*>(&q.y));
        v[0] = a.x;
        v[1] = a.y;
        v[2] = b.x;
        v[3] = b.y;
    }
    template <class T>
    __device__ __forceinline__ static float gather(T const* p)
    {
        return to_f(__ldg(p));
    }
    __device__ __forceinline__ static void store(float* p, float v)
    {
        __stcs(p, v);
    }
    __device__ __forceinline__ static void store(__half* p, float v)
    {
        __stcs(p, __float2half_rn(v));
    }
    __device__ __forceinline__ static void store4(float* p, float const (&v)[kPix])
    {
        __stcs(reinterpret_cast<float4*>(p), make_float4(v[0], v[1], v[2], v[3]));
    }
    __device__ __forceinline__ static void store4(__half* p, float const (&v)[kPix])
    {
        __half2 const lo = __floats2half2_rn(v[0], v[1]);
        __half2 const hi = __floats2half2_rn(v[2], v[3]);
        uint2 q;
        q.x = *reinterpret_cast<unsigned const*>(&lo);
        q.y = *reinterpret_cast<unsigned const*>(&hi);
        __stcs(reinterpret_cast<uint2*>(p), q);
    }
    __device__ __forceinline__ static int f2i_rz(float x)
    {
        return __float2int_rz(x); // cvt.rzi.s32.f32: saturating, NaN -> 0
    }
    __device__ __forceinline__ static int f2i16_rz(float x)
    {
        short r; // cvt.rzi.s16.f32: saturating to 16 bits, NaN -> 0; one F2I.S16 on sm_90
        asm("cvt.rzi.s16.f32 %0, %1;" : "=h"(r) : "f"(x));
        return r;
    }
    __device__ __forceinline__ static int add_min(int a, int b, int c)
    {
        return __viaddmin_s32(a, b, c);
    }
    __device__ __forceinline__ static int add_min_relu(int a, int b, int c)
    {
        return __viaddmin_s32_relu(a, b, c);
    }
    __device__ __forceinline__ static int relu_min(int a, int b)
    {
        return __vimin_s32_relu(a, b); // one VIMNMX.RELU on sm_90
    }
    __device__ __forceinline__ static int add_max(int a, int b, int c)
    {
        return __viaddmax_s32(a, b, c); // one VIADDMNMX on sm_90
    }
    // The channel plane pointers, opaque to the compiler: without this it folds the pointer into a 64-bit index
    // sum (frame base + channel offset + in-plane index) and spends 5 instructions per gather on it instead of one
    // IMAD.WIDE of the 32-bit in-plane index onto the pointer.
    template <class T>
    __device__ __forceinline__ static T const* opaque(T const* p)
    {
        asm("" : "+l"(p));
        return p;
    }
};

// grid: x over ceil(W / (kPix * kBlock)), y over rows row0 .. row0 + gridDim.y - 1, z over batches b0 .. ; one
// channel pass [c0, c0 + min(3, C - c0)) per launch.
template <int KC, bool Vec, class T, class TO>
__global__ void __launch_bounds__(kBlock) synthesis_kernel(
    SynthesisTensors<T, TO> t, SynthesisShape s, int c0, int row0, int b0)
{
    int const j0 = (blockIdx.x * kBlock + threadIdx.x) * kPix;
    if (j0 >= s.W)
    {
        return;
    }
    body::synthesis_thread<KC, Vec, DeviceMem>(
        t, s, c0, row0 + static_cast<int>(blockIdx.y), b0 + static_cast<int>(blockIdx.z), j0);
}

template <class T, class TO>
SynthesisTensors<T, TO> tensors_of(SynthesisLaunch const& p)
{
    return SynthesisTensors<T, TO>{static_cast<T const*>(p.frame0), static_cast<T const*>(p.frame2),
        static_cast<T const*>(p.weight1), static_cast<TO const*>(p.alpha1), static_cast<TO const*>(p.beta1),
        static_cast<T const*>(p.weight2), static_cast<TO const*>(p.alpha2), static_cast<TO const*>(p.beta2),
        static_cast<T const*>(p.occlusion), static_cast<T*>(p.out)};
}

bool vector_ok(SynthesisLaunch const& p, size_t elem)
{
    void const* const tensors[] = {p.frame0, p.frame2, p.weight1, p.weight2, p.occlusion, p.out};
    void const* const offsets[] = {p.alpha1, p.beta1, p.alpha2, p.beta2};
    size_t const offset_elem = p.offset_type == TensorType::kFloat32 ? sizeof(float) : elem;
    return body::vector_ok(tensors, 6, offsets, elem, offset_elem, p.W);
}

template <class T, class TO, int KC, bool Vec>
int32_t launch_all(SynthesisLaunch const& p, cudaStream_t stream)
{
    SynthesisShape const s{p.B, p.C, p.H, p.W, p.kernel_size, p.dilation};
    SynthesisTensors<T, TO> const t = tensors_of<T, TO>(p);
    unsigned const blocks_x = static_cast<unsigned>((p.W + kPix * kBlock - 1) / (kPix * kBlock));
    // Usually one launch: H <= 65535, B <= 65535 and C <= 3.
    for (int c0 = 0; c0 < p.C; c0 += kCh)
    {
        for (int b0 = 0; b0 < p.B; b0 += kMaxGrid)
        {
            for (int row0 = 0; row0 < p.H; row0 += kMaxGrid)
            {
                dim3 const grid(blocks_x, static_cast<unsigned>(min(kMaxGrid, p.H - row0)),
                    static_cast<unsigned>(min(kMaxGrid, p.B - b0)));
                int32_t const status = detail::launch(
                    synthesis_kernel<KC, Vec, T, TO>, grid, dim3(kBlock), stream, t, s, c0, row0, b0);
                if (status != 0)
                {
                    return status;
                }
            }
        }
    }
    return 0;
}

template <class T, class TO>
int32_t launch_typed(SynthesisLaunch const& p, cudaStream_t stream)
{
    bool const vec = vector_ok(p, sizeof(T));
    // The compiled kernel sizes of the released variants (K = 5, and K = 11 of AdaCoF-pytorch) take 16-bit tap
    // coordinates (adacof_kernel_body.h, axis): frames up to kNarrowMax - pad a side; others, and larger frames,
    // the run-time-K kernel.
    int const limit = body::kNarrowMax - adacof_kernel_pad(p.kernel_size, p.dilation);
    bool const narrow = p.H <= limit && p.W <= limit;
    switch (narrow ? p.kernel_size : 0)
    {
    case 5: return vec ? launch_all<T, TO, 5, true>(p, stream) : launch_all<T, TO, 5, false>(p, stream);
    case 11: return vec ? launch_all<T, TO, 11, true>(p, stream) : launch_all<T, TO, 11, false>(p, stream);
    default: return launch_all<T, TO, 0, false>(p, stream);
    }
}

} // namespace

int32_t launch_synthesis(SynthesisLaunch const& p, cudaStream_t stream)
{
    int32_t const status = detail::check_launch(p);
    if (status != 0 || detail::is_empty(p))
    {
        return status;
    }
    if (p.type == TensorType::kFloat32)
    {
        return launch_typed<float, float>(p, stream);
    }
    if (p.offset_type == TensorType::kFloat32)
    {
        return launch_typed<__half, float>(p, stream);
    }
    return launch_typed<__half, __half>(p, stream);
}

} // namespace sfadacof

extern "C" {

int32_t sfadacof_cuda_abi_version(void)
{
    return SFADACOF_CUDA_ABI_VERSION;
}

char const* sfadacof_cuda_status_string(int32_t status)
{
    switch (status)
    {
    case SFADACOF_CUDA_BAD_PARAMS:
        return "invalid kernel_size/dilation: need 1 <= kernel_size <= 64, 1 <= dilation <= 64 and "
               "(kernel_size - 1) * dilation even";
    case SFADACOF_CUDA_BAD_TYPE:
        return "unsupported dtypes: all float32, all float16, or float16 with float32 alpha/beta";
    case SFADACOF_CUDA_BAD_SHAPE: return "invalid shape: negative size or a plane of 2^31 elements or more";
    default: return status >= 0 ? cudaGetErrorString(static_cast<cudaError_t>(status)) : "unknown status";
    }
}

int32_t sfadacof_cuda_synthesis(void const* frame0, void const* frame2, void const* weight1, void const* alpha1,
    void const* beta1, void const* weight2, void const* alpha2, void const* beta2, void const* occlusion, void* out,
    int32_t type, int32_t offset_type, int32_t B, int32_t C, int32_t H, int32_t W, int32_t kernel_size,
    int32_t dilation, void* stream)
{
    return sfadacof::launch_synthesis(sfadacof::detail::make_launch(frame0, frame2, weight1, alpha1, beta1, weight2,
                                          alpha2, beta2, occlusion, out, type, offset_type, B, C, H, W, kernel_size,
                                          dilation),
        static_cast<cudaStream_t>(stream));
}

} // extern "C"
