// CUDA kernels of the fused AdaCoF synthesis op. Per-pixel arithmetic: adacof_math.h (shared with the CPU kernel).
#include "adacof_kernels.h"
#include "adacof_math.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <limits>
#include <stddef.h>
#include <string.h>
#include <utility>

namespace sfadacof
{
namespace
{

__device__ __forceinline__ float to_float(float x)
{
    return x;
}
__device__ __forceinline__ float to_float(__half x)
{
    return __half2float(x);
}
template <class T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x)
{
    return x;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float x)
{
    return __float2half_rn(x);
}

// Optimised kernel: maps and occlusion are read exactly once -> streaming loads (evict-first), so they do not push
// the frames, which neighbouring threads gather again, out of L1/L2; frames through the read-only data cache.
struct StreamingLoader
{
    template <class T>
    __device__ __forceinline__ static float map(T const* p)
    {
        return to_float(__ldcs(p));
    }
    template <class T>
    __device__ __forceinline__ static float off(T const* p)
    {
        return to_float(__ldcs(p));
    }
    template <class T>
    __device__ __forceinline__ static float frame(T const* p)
    {
        return to_float(__ldg(p));
    }
};

// Original-style kernel: plain loads everywhere, as the AdaCoF repository's CuPy kernel.
struct PlainLoader
{
    template <class T>
    __device__ __forceinline__ static float map(T const* p)
    {
        return to_float(*p);
    }
    template <class T>
    __device__ __forceinline__ static float off(T const* p)
    {
        return to_float(*p);
    }
    template <class T>
    __device__ __forceinline__ static float frame(T const* p)
    {
        return to_float(*p);
    }
};

constexpr int kBlockX = 128;

// grid: x over ceil(W / kBlockX), y over rows (grid-stride), z over B * channel passes (grid-stride).
template <int KC, class T, class TO>
__global__ void __launch_bounds__(kBlockX) synthesis_kernel(SynthesisTensors<T, TO> t, SynthesisShape s)
{
    int const j = blockIdx.x * kBlockX + threadIdx.x;
    if (j >= s.W)
    {
        return;
    }
    int const passes = (s.C + kChannelsPerPass - 1) / kChannelsPerPass;
    size_t const plane = static_cast<size_t>(s.H) * static_cast<size_t>(s.W);
    for (int z = blockIdx.z; z < s.B * passes; z += gridDim.z)
    {
        int const b = z / passes;
        int const c0 = (z - b * passes) * kChannelsPerPass;
        int const nc = min(kChannelsPerPass, s.C - c0);
        for (int i = blockIdx.y; i < s.H; i += gridDim.y)
        {
            float px[kChannelsPerPass];
            synthesis_pixel<KC, StreamingLoader>(t, s, b, i, j, c0, nc, px);
            T* out = t.out + (static_cast<size_t>(b) * s.C + c0) * plane + static_cast<size_t>(i) * s.W + j;
#pragma unroll
            for (int c = 0; c < kChannelsPerPass; ++c)
            {
                if (c < nc)
                {
                    __stcs(out + static_cast<size_t>(c) * plane, from_float<T>(px[c]));
                }
            }
        }
    }
}

// ---- The tiled kernel (issue 13, section 2): fewer instructions per pixel for the same arithmetic. ----
//
// Each thread computes kTilePix = 4 horizontally consecutive pixels of one row, all 3 channels (C == 3 fixed at
// compile time: no per-channel predicate), both directions and the blend:
//   * maps, offsets and occlusion are read as one 16-byte (fp32: float4) or 8-byte (fp16: 4 halves) streaming load
//     per tap for the 4 pixels instead of 4 scalar loads, so a warp still reads 512 / 256 contiguous bytes;
//   * frame gathers use 32-bit in-plane indices (tap_corners) on per-channel plane pointers computed once per
//     thread, so each gather costs one wide address add;
//   * no grid-stride loops inside: one block row per image row, blockIdx.z over the batch.
// The per-pixel arithmetic is adacof_math.h's (tap_corners, bilinear, blend), taps in the same order (k outer,
// l inner), fp32 accumulation in that order per pixel, so results equal the first kernel's up to FMA contraction.
// Needs C == 3, W % 4 == 0 and every tensor 16-byte aligned (torch allocations are 256-byte aligned, and the model
// pads W to a multiple of 32); otherwise the launcher returns SFADACOF_CUDA_UNSUPPORTED.
constexpr int kTilePix = 4;
constexpr int kTileChannels = 3;
constexpr int kTileBlockX = 64; // threads per block along x: 256 pixels of one row

template <class T>
struct Vec4;
template <>
struct Vec4<float>
{
    __device__ __forceinline__ static void load_stream(float const* p, float (&v)[kTilePix])
    {
        float4 const q = __ldcs(reinterpret_cast<float4 const*>(p));
        v[0] = q.x;
        v[1] = q.y;
        v[2] = q.z;
        v[3] = q.w;
    }
    __device__ __forceinline__ static void store_stream(float* p, float const (&v)[kTilePix])
    {
        __stcs(reinterpret_cast<float4*>(p), make_float4(v[0], v[1], v[2], v[3]));
    }
};
template <>
struct Vec4<__half>
{
    __device__ __forceinline__ static void load_stream(__half const* p, float (&v)[kTilePix])
    {
        uint2 const q = __ldcs(reinterpret_cast<uint2 const*>(p));
        __half2 lo, hi;
        memcpy(&lo, &q.x, sizeof(lo));
        memcpy(&hi, &q.y, sizeof(hi));
        float2 const a = __half22float2(lo);
        float2 const b = __half22float2(hi);
        v[0] = a.x;
        v[1] = a.y;
        v[2] = b.x;
        v[3] = b.y;
    }
    __device__ __forceinline__ static void store_stream(__half* p, float const (&v)[kTilePix])
    {
        __half2 const lo = __floats2half2_rn(v[0], v[1]);
        __half2 const hi = __floats2half2_rn(v[2], v[3]);
        uint2 q;
        memcpy(&q.x, &lo, sizeof(lo));
        memcpy(&q.y, &hi, sizeof(hi));
        __stcs(reinterpret_cast<uint2*>(p), q);
    }
};

// One direction for the 4 pixels (i, j0 .. j0+3): acc[p][c] += sum over taps, in adacof_math.h's order.
template <int KC, class T, class TO>
__device__ __forceinline__ void tiled_direction(T const* __restrict__ frame, int plane, int H, int W, int K,
    int dilation, T const* __restrict__ weight, TO const* __restrict__ alpha, TO const* __restrict__ beta,
    int i, int j0, float (&acc)[kTilePix][kTileChannels])
{
    int const pad = adacof_kernel_pad(K, dilation);
    T const* const f0 = frame;
    T const* const f1 = frame + plane;
    T const* const f2 = frame + 2 * static_cast<ptrdiff_t>(plane);
    // K = 5: all 25 taps unrolled. Larger K: rows stay a loop (fully unrolling 121 taps x 4 pixels costs minutes
    // of nvcc time and spills registers for no fewer instructions per pixel).
#pragma unroll(KC > 0 && KC <= 5 ? KC : 1)
    for (int k = 0; k < (KC > 0 ? KC : K); ++k)
    {
        int const row_base = i + k * dilation - pad;
#pragma unroll
        for (int l = 0; l < (KC > 0 ? KC : K); ++l)
        {
            ptrdiff_t const t = static_cast<ptrdiff_t>(k * K + l) * plane;
            float w[kTilePix], a[kTilePix], b[kTilePix];
            Vec4<T>::load_stream(weight + t, w);
            Vec4<TO>::load_stream(alpha + t, a);
            Vec4<TO>::load_stream(beta + t, b);
            int const col_base = j0 + l * dilation - pad;
#pragma unroll
            for (int p = 0; p < kTilePix; ++p)
            {
                TapCorners const q = tap_corners(row_base, col_base + p, a[p], b[p], H, W);
                acc[p][0] += w[p]
                    * bilinear(to_float(__ldg(f0 + q.i00)), to_float(__ldg(f0 + q.i10)), to_float(__ldg(f0 + q.i01)),
                        to_float(__ldg(f0 + q.i11)), q.fa, q.fe);
                acc[p][1] += w[p]
                    * bilinear(to_float(__ldg(f1 + q.i00)), to_float(__ldg(f1 + q.i10)), to_float(__ldg(f1 + q.i01)),
                        to_float(__ldg(f1 + q.i11)), q.fa, q.fe);
                acc[p][2] += w[p]
                    * bilinear(to_float(__ldg(f2 + q.i00)), to_float(__ldg(f2 + q.i10)), to_float(__ldg(f2 + q.i01)),
                        to_float(__ldg(f2 + q.i11)), q.fa, q.fe);
            }
        }
    }
}

// grid: x over ceil(W / (kTilePix * kTileBlockX)), y over rows (grid-stride beyond 65535), z over the batch.
template <int KC, class T, class TO>
__global__ void __launch_bounds__(kTileBlockX) tiled_synthesis_kernel(SynthesisTensors<T, TO> t, SynthesisShape s)
{
    int const j0 = (blockIdx.x * kTileBlockX + threadIdx.x) * kTilePix;
    if (j0 >= s.W)
    {
        return;
    }
    int const K = KC > 0 ? KC : s.kernel_size;
    int const plane = s.H * s.W; // < 2^31 (check_launch)
    int const b = blockIdx.z;
    ptrdiff_t const frame_off = static_cast<ptrdiff_t>(b) * kTileChannels * plane;
    ptrdiff_t const map_batch = static_cast<ptrdiff_t>(b) * K * K * plane;
    for (int i = blockIdx.y; i < s.H; i += gridDim.y)
    {
        int const pix = i * s.W + j0;
        float o1[kTilePix][kTileChannels], o2[kTilePix][kTileChannels];
#pragma unroll
        for (int p = 0; p < kTilePix; ++p)
        {
#pragma unroll
            for (int c = 0; c < kTileChannels; ++c)
            {
                o1[p][c] = 0.0f;
                o2[p][c] = 0.0f;
            }
        }
        tiled_direction<KC>(t.frame0 + frame_off, plane, s.H, s.W, K, s.dilation, t.weight1 + map_batch + pix,
            t.alpha1 + map_batch + pix, t.beta1 + map_batch + pix, i, j0, o1);
        tiled_direction<KC>(t.frame2 + frame_off, plane, s.H, s.W, K, s.dilation, t.weight2 + map_batch + pix,
            t.alpha2 + map_batch + pix, t.beta2 + map_batch + pix, i, j0, o2);
        float v[kTilePix];
        Vec4<T>::load_stream(t.occlusion + static_cast<ptrdiff_t>(b) * plane + pix, v);
#pragma unroll
        for (int c = 0; c < kTileChannels; ++c)
        {
            float r[kTilePix];
#pragma unroll
            for (int p = 0; p < kTilePix; ++p)
            {
                r[p] = blend(v[p], o1[p][c], o2[p][c]);
            }
            Vec4<T>::store_stream(t.out + frame_off + static_cast<ptrdiff_t>(c) * plane + pix, r);
        }
    }
}

// Original style: one thread per output element (b, c, i, j) of one direction, flat index, runtime K.
template <class T, class TO>
__global__ void naive_direction_kernel(T const* frame, T const* weight, TO const* alpha, TO const* beta, T* out,
    SynthesisShape s)
{
    size_t const plane = static_cast<size_t>(s.H) * static_cast<size_t>(s.W);
    size_t const total = static_cast<size_t>(s.B) * s.C * plane;
    for (size_t idx = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; idx < total;
         idx += static_cast<size_t>(gridDim.x) * blockDim.x)
    {
        int const j = static_cast<int>(idx % s.W);
        int const i = static_cast<int>((idx / s.W) % s.H);
        int const c = static_cast<int>((idx / plane) % s.C);
        int const b = static_cast<int>(idx / (plane * s.C));
        size_t const map_off
            = static_cast<size_t>(b) * s.kernel_size * s.kernel_size * plane + static_cast<size_t>(i) * s.W + j;
        float acc[kChannelsPerPass] = {0.0f, 0.0f, 0.0f, 0.0f};
        accumulate_direction<0, PlainLoader>(frame + static_cast<size_t>(b) * s.C * plane, plane, c, 1, s.H, s.W,
            weight + map_off, alpha + map_off, beta + map_off, plane, s.kernel_size, s.dilation, i, j, acc);
        out[idx] = from_float<T>(acc[0]);
    }
}

template <class T>
__global__ void naive_blend_kernel(T const* o1, T const* o2, T const* occlusion, T* out, SynthesisShape s)
{
    size_t const plane = static_cast<size_t>(s.H) * static_cast<size_t>(s.W);
    size_t const total = static_cast<size_t>(s.B) * s.C * plane;
    for (size_t idx = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; idx < total;
         idx += static_cast<size_t>(gridDim.x) * blockDim.x)
    {
        size_t const b = idx / (plane * s.C);
        float const v = to_float(occlusion[b * plane + idx % plane]);
        out[idx] = from_float<T>(blend(v, to_float(o1[idx]), to_float(o2[idx])));
    }
}

int32_t check_launch(SynthesisLaunch const& p)
{
    if (!adacof_params_valid(p.kernel_size, p.dilation))
    {
        return SFADACOF_CUDA_BAD_PARAMS;
    }
    if (p.B < 0 || p.C < 0 || p.H < 0 || p.W < 0
        || static_cast<int64_t>(p.H) * p.W > std::numeric_limits<int32_t>::max())
    {
        return SFADACOF_CUDA_BAD_SHAPE;
    }
    bool const type_ok = p.type == TensorType::kFloat32 || p.type == TensorType::kFloat16;
    bool const off_ok = p.offset_type == p.type || p.offset_type == TensorType::kFloat32;
    if (!type_ok || !off_ok)
    {
        return SFADACOF_CUDA_BAD_TYPE;
    }
    return 0;
}

template <class T, class TO>
SynthesisTensors<T, TO> tensors_of(SynthesisLaunch const& p)
{
    return SynthesisTensors<T, TO>{static_cast<T const*>(p.frame0), static_cast<T const*>(p.frame2),
        static_cast<T const*>(p.weight1), static_cast<TO const*>(p.alpha1), static_cast<TO const*>(p.beta1),
        static_cast<T const*>(p.weight2), static_cast<TO const*>(p.alpha2), static_cast<TO const*>(p.beta2),
        static_cast<T const*>(p.occlusion), static_cast<T*>(p.out)};
}

constexpr int kMaxGridYZ = 65535;

// Launches through cudaLaunchKernelEx, whose return value is this launch's own status; cudaGetLastError /
// cudaPeekAtLastError after a <<<>>> launch can report (and clear) an error left by unrelated earlier work.
template <class... KernelArgs, class... Args>
int32_t launch(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, cudaStream_t stream, Args&&... args)
{
    cudaLaunchConfig_t config{};
    config.gridDim = grid;
    config.blockDim = block;
    config.dynamicSmemBytes = 0;
    config.stream = stream;
    return static_cast<int32_t>(cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...));
}

template <class T, class TO>
int32_t launch_typed(SynthesisLaunch const& p, cudaStream_t stream)
{
    SynthesisShape const s{p.B, p.C, p.H, p.W, p.kernel_size, p.dilation};
    int const passes = (p.C + kChannelsPerPass - 1) / kChannelsPerPass;
    dim3 const block(kBlockX);
    dim3 const grid((p.W + kBlockX - 1) / kBlockX, p.H < kMaxGridYZ ? p.H : kMaxGridYZ,
        p.B * passes < kMaxGridYZ ? p.B * passes : kMaxGridYZ);
    SynthesisTensors<T, TO> const t = tensors_of<T, TO>(p);
    // Compile-time kernel sizes of the released variants (K = 5, and K = 11 of AdaCoF-pytorch); others at run time.
    switch (p.kernel_size)
    {
    case 5: return launch(synthesis_kernel<5, T, TO>, grid, block, stream, t, s);
    case 11: return launch(synthesis_kernel<11, T, TO>, grid, block, stream, t, s);
    default: return launch(synthesis_kernel<0, T, TO>, grid, block, stream, t, s);
    }
}

bool aligned16(void const* p)
{
    return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

template <class T, class TO>
int32_t launch_tiled_typed(SynthesisLaunch const& p, cudaStream_t stream)
{
    SynthesisShape const s{p.B, p.C, p.H, p.W, p.kernel_size, p.dilation};
    int const threads_x = (p.W / kTilePix + kTileBlockX - 1) / kTileBlockX;
    dim3 const block(kTileBlockX);
    dim3 const grid(threads_x, p.H < kMaxGridYZ ? p.H : kMaxGridYZ, p.B);
    SynthesisTensors<T, TO> const t = tensors_of<T, TO>(p);
    switch (p.kernel_size)
    {
    case 5: return launch(tiled_synthesis_kernel<5, T, TO>, grid, block, stream, t, s);
    case 11: return launch(tiled_synthesis_kernel<11, T, TO>, grid, block, stream, t, s);
    default: return launch(tiled_synthesis_kernel<0, T, TO>, grid, block, stream, t, s);
    }
}

template <class T, class TO>
int32_t launch_naive_typed(SynthesisLaunch const& p, void* o1, void* o2, cudaStream_t stream)
{
    SynthesisShape const s{p.B, p.C, p.H, p.W, p.kernel_size, p.dilation};
    SynthesisTensors<T, TO> const t = tensors_of<T, TO>(p);
    size_t const total = static_cast<size_t>(p.B) * p.C * p.H * p.W;
    int const block = 256;
    size_t const blocks = (total + block - 1) / block;
    dim3 const grid(static_cast<unsigned>(blocks < (1u << 30) ? blocks : (1u << 30)));
    int32_t status = launch(naive_direction_kernel<T, TO>, grid, dim3(block), stream, t.frame0, t.weight1, t.alpha1,
        t.beta1, static_cast<T*>(o1), s);
    if (status == 0)
    {
        status = launch(naive_direction_kernel<T, TO>, grid, dim3(block), stream, t.frame2, t.weight2, t.alpha2,
            t.beta2, static_cast<T*>(o2), s);
    }
    if (status == 0)
    {
        status = launch(naive_blend_kernel<T>, grid, dim3(block), stream, static_cast<T const*>(o1),
            static_cast<T const*>(o2), t.occlusion, t.out, s);
    }
    return status;
}

bool is_empty(SynthesisLaunch const& p)
{
    return p.B == 0 || p.C == 0 || p.H == 0 || p.W == 0;
}

} // namespace

int32_t launch_synthesis(SynthesisLaunch const& p, cudaStream_t stream)
{
    int32_t const status = check_launch(p);
    if (status != 0 || is_empty(p))
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

bool tiled_supported(SynthesisLaunch const& p)
{
    void const* const ptrs[] = {p.frame0, p.frame2, p.weight1, p.alpha1, p.beta1, p.weight2, p.alpha2, p.beta2,
        p.occlusion, p.out};
    bool aligned = true;
    for (void const* q : ptrs)
    {
        aligned = aligned && aligned16(q);
    }
    return p.C == kTileChannels && p.W % kTilePix == 0 && p.B <= kMaxGridYZ && aligned;
}

int32_t launch_synthesis_tiled(SynthesisLaunch const& p, cudaStream_t stream)
{
    int32_t const status = check_launch(p);
    if (status != 0 || is_empty(p))
    {
        return status;
    }
    if (!tiled_supported(p))
    {
        return SFADACOF_CUDA_UNSUPPORTED;
    }
    if (p.type == TensorType::kFloat32)
    {
        return launch_tiled_typed<float, float>(p, stream);
    }
    if (p.offset_type == TensorType::kFloat32)
    {
        return launch_tiled_typed<__half, float>(p, stream);
    }
    return launch_tiled_typed<__half, __half>(p, stream);
}

int32_t launch_synthesis_naive(SynthesisLaunch const& p, void* o1, void* o2, cudaStream_t stream)
{
    int32_t const status = check_launch(p);
    if (status != 0 || is_empty(p))
    {
        return status;
    }
    if (p.type == TensorType::kFloat32)
    {
        return launch_naive_typed<float, float>(p, o1, o2, stream);
    }
    if (p.offset_type == TensorType::kFloat32)
    {
        return launch_naive_typed<__half, float>(p, o1, o2, stream);
    }
    return launch_naive_typed<__half, __half>(p, o1, o2, stream);
}

} // namespace sfadacof

namespace
{
sfadacof::SynthesisLaunch make_launch(void const* frame0, void const* frame2, void const* weight1, void const* alpha1,
    void const* beta1, void const* weight2, void const* alpha2, void const* beta2, void const* occlusion, void* out,
    int32_t type, int32_t offset_type, int32_t B, int32_t C, int32_t H, int32_t W, int32_t kernel_size,
    int32_t dilation)
{
    return sfadacof::SynthesisLaunch{frame0, frame2, weight1, alpha1, beta1, weight2, alpha2, beta2, occlusion, out,
        static_cast<sfadacof::TensorType>(type), static_cast<sfadacof::TensorType>(offset_type), B, C, H, W,
        kernel_size, dilation};
}
} // namespace

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
    case SFADACOF_CUDA_UNSUPPORTED:
        return "the tiled kernel needs C == 3, W % 4 == 0, B <= 65535 and 16-byte aligned tensors";
    default: return status >= 0 ? cudaGetErrorString(static_cast<cudaError_t>(status)) : "unknown status";
    }
}

int32_t sfadacof_cuda_synthesis(void const* frame0, void const* frame2, void const* weight1, void const* alpha1,
    void const* beta1, void const* weight2, void const* alpha2, void const* beta2, void const* occlusion, void* out,
    int32_t type, int32_t offset_type, int32_t B, int32_t C, int32_t H, int32_t W, int32_t kernel_size,
    int32_t dilation, void* stream)
{
    return sfadacof::launch_synthesis(make_launch(frame0, frame2, weight1, alpha1, beta1, weight2, alpha2, beta2,
                                          occlusion, out, type, offset_type, B, C, H, W, kernel_size, dilation),
        static_cast<cudaStream_t>(stream));
}

int32_t sfadacof_cuda_synthesis_naive(void const* frame0, void const* frame2, void const* weight1, void const* alpha1,
    void const* beta1, void const* weight2, void const* alpha2, void const* beta2, void const* occlusion, void* out,
    void* o1, void* o2, int32_t type, int32_t offset_type, int32_t B, int32_t C, int32_t H, int32_t W,
    int32_t kernel_size, int32_t dilation, void* stream)
{
    return sfadacof::launch_synthesis_naive(make_launch(frame0, frame2, weight1, alpha1, beta1, weight2, alpha2,
                                                beta2, occlusion, out, type, offset_type, B, C, H, W, kernel_size,
                                                dilation),
        o1, o2, static_cast<cudaStream_t>(stream));
}

int32_t sfadacof_cuda_synthesis_tiled(void const* frame0, void const* frame2, void const* weight1, void const* alpha1,
    void const* beta1, void const* weight2, void const* alpha2, void const* beta2, void const* occlusion, void* out,
    int32_t type, int32_t offset_type, int32_t B, int32_t C, int32_t H, int32_t W, int32_t kernel_size,
    int32_t dilation, void* stream)
{
    return sfadacof::launch_synthesis_tiled(make_launch(frame0, frame2, weight1, alpha1, beta1, weight2, alpha2,
                                                beta2, occlusion, out, type, offset_type, B, C, H, W, kernel_size,
                                                dilation),
        static_cast<cudaStream_t>(stream));
}

} // extern "C"
