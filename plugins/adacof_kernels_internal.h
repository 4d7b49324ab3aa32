// Host-side helpers shared by the CUDA launchers (adacof_kernels.cu: the kernel the plugin runs; adacof_naive.cu:
// the original-style baseline, outside the plugin library). Not part of any public interface.
#pragma once

#include "adacof_kernels.h"
#include "adacof_math.h"

#include <cuda_runtime.h>

#include <limits>
#include <stdint.h>
#include <utility>

namespace sfadacof
{
namespace detail
{

inline int32_t check_launch(SynthesisLaunch const& p)
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

inline bool is_empty(SynthesisLaunch const& p)
{
    return p.B == 0 || p.C == 0 || p.H == 0 || p.W == 0;
}

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

inline SynthesisLaunch make_launch(void const* frame0, void const* frame2, void const* weight1, void const* alpha1,
    void const* beta1, void const* weight2, void const* alpha2, void const* beta2, void const* occlusion, void* out,
    int32_t type, int32_t offset_type, int32_t B, int32_t C, int32_t H, int32_t W, int32_t kernel_size,
    int32_t dilation)
{
    return SynthesisLaunch{frame0, frame2, weight1, alpha1, beta1, weight2, alpha2, beta2, occlusion, out,
        static_cast<TensorType>(type), static_cast<TensorType>(offset_type), B, C, H, W, kernel_size, dilation};
}

} // namespace detail
} // namespace sfadacof
