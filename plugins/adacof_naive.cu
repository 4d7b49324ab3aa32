// The original-style CUDA implementation of the fused op (the AdaCoF repository's layout): one thread per output
// element (b, c, i, j) and one launch per direction into o1 / o2, then a blend kernel. A baseline for tests and
// plugins.benchmark only: linked into libsfadacof_cuda, never into the TensorRT plugin library.
#include "adacof_kernels.h"
#include "adacof_kernels_internal.h"
#include "adacof_math.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stddef.h>

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

// Plain loads everywhere, as the AdaCoF repository's CuPy kernel.
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

// One thread per output element (b, c, i, j) of one direction, flat index, run-time K (adacof_math.h's loop).
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

template <class T, class TO>
int32_t launch_naive_typed(SynthesisLaunch const& p, void* o1, void* o2, cudaStream_t stream)
{
    SynthesisShape const s{p.B, p.C, p.H, p.W, p.kernel_size, p.dilation};
    T const* const f0 = static_cast<T const*>(p.frame0);
    T const* const f2 = static_cast<T const*>(p.frame2);
    size_t const total = static_cast<size_t>(p.B) * p.C * p.H * p.W;
    int const block = 256;
    size_t const blocks = (total + block - 1) / block;
    dim3 const grid(static_cast<unsigned>(blocks < (1u << 30) ? blocks : (1u << 30)));
    int32_t status = detail::launch(naive_direction_kernel<T, TO>, grid, dim3(block), stream, f0,
        static_cast<T const*>(p.weight1), static_cast<TO const*>(p.alpha1), static_cast<TO const*>(p.beta1),
        static_cast<T*>(o1), s);
    if (status == 0)
    {
        status = detail::launch(naive_direction_kernel<T, TO>, grid, dim3(block), stream, f2,
            static_cast<T const*>(p.weight2), static_cast<TO const*>(p.alpha2), static_cast<TO const*>(p.beta2),
            static_cast<T*>(o2), s);
    }
    if (status == 0)
    {
        status = detail::launch(naive_blend_kernel<T>, grid, dim3(block), stream, static_cast<T const*>(o1),
            static_cast<T const*>(o2), static_cast<T const*>(p.occlusion), static_cast<T*>(p.out), s);
    }
    return status;
}

} // namespace

int32_t launch_synthesis_naive(SynthesisLaunch const& p, void* o1, void* o2, cudaStream_t stream)
{
    int32_t const status = detail::check_launch(p);
    if (status != 0 || detail::is_empty(p))
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

extern "C" {

int32_t sfadacof_cuda_synthesis_naive(void const* frame0, void const* frame2, void const* weight1, void const* alpha1,
    void const* beta1, void const* weight2, void const* alpha2, void const* beta2, void const* occlusion, void* out,
    void* o1, void* o2, int32_t type, int32_t offset_type, int32_t B, int32_t C, int32_t H, int32_t W,
    int32_t kernel_size, int32_t dilation, void* stream)
{
    return sfadacof::launch_synthesis_naive(sfadacof::detail::make_launch(frame0, frame2, weight1, alpha1, beta1,
                                                weight2, alpha2, beta2, occlusion, out, type, offset_type, B, C, H,
                                                W, kernel_size, dilation),
        o1, o2, static_cast<cudaStream_t>(stream));
}

} // extern "C"
