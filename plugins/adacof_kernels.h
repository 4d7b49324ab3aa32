// CUDA kernels of the fused AdaCoF synthesis op (fp32 and fp16 tensors, NCHW linear), used by the TensorRT plugin
// and, through the extern "C" functions, by Python (tests, benchmark: plugins/cuda_op.py).
// Launch only: no allocation, no synchronisation; everything runs on the given stream.
#pragma once

#include <cuda_runtime_api.h>
#include <stdint.h>

#if defined(_WIN32)
#define SFADACOF_CUDA_API __declspec(dllexport)
#else
#define SFADACOF_CUDA_API __attribute__((visibility("default")))
#endif

// Status codes beyond cudaError_t (which are >= 0): returned by the launchers for invalid arguments.
#define SFADACOF_CUDA_BAD_PARAMS (-1) // kernel_size/dilation out of range, or (K-1)*d odd
#define SFADACOF_CUDA_BAD_TYPE (-2)   // unsupported dtype combination
#define SFADACOF_CUDA_BAD_SHAPE (-3)  // negative size, or a plane of 2^31 elements or more
#define SFADACOF_CUDA_UNSUPPORTED (-4) // tiled kernel: needs C == 3, W % 4 == 0, B <= 65535, 16-byte alignment
#define SFADACOF_CUDA_ABI_VERSION 1

#ifdef __cplusplus
namespace sfadacof
{

enum class TensorType : int32_t
{
    kFloat32 = 0,
    kFloat16 = 1,
};

// The fused op's tensors (device pointers, NCHW contiguous). frame0/frame2/weights/occlusion/out share `type`;
// alpha1/beta1/alpha2/beta2 have `offset_type`, which is `type` or kFloat32 (fp16 tensors with fp32 offsets).
struct SynthesisLaunch
{
    void const* frame0;
    void const* frame2;
    void const* weight1;
    void const* alpha1;
    void const* beta1;
    void const* weight2;
    void const* alpha2;
    void const* beta2;
    void const* occlusion;
    void* out;
    TensorType type;
    TensorType offset_type;
    int32_t B, C, H, W, kernel_size, dilation;
};

// The bandwidth-oriented fused kernel: one thread per output pixel (consecutive x in a warp), both directions and
// the blend, each map element read once (streaming loads), frames through the read-only cache.
// Returns 0 or a cudaError_t / SFADACOF_CUDA_* code.
int32_t launch_synthesis(SynthesisLaunch const& p, cudaStream_t stream);

// The tiled kernel (same arithmetic, fewer instructions: 4 pixels x 3 channels per thread, vector map loads,
// 32-bit in-plane gathers). Selectable next to launch_synthesis until it is proven on a device; returns
// SFADACOF_CUDA_UNSUPPORTED when tiled_supported(p) is false (the caller then uses launch_synthesis).
bool tiled_supported(SynthesisLaunch const& p);
int32_t launch_synthesis_tiled(SynthesisLaunch const& p, cudaStream_t stream);

// The original-style implementation (the AdaCoF repository's layout): one thread per output element (b, c, i, j)
// and one launch per direction into o1 / o2 (each B*C*H*W elements of `type`), then a blend kernel. Benchmark only.
int32_t launch_synthesis_naive(SynthesisLaunch const& p, void* o1, void* o2, cudaStream_t stream);

} // namespace sfadacof

extern "C" {
#endif

SFADACOF_CUDA_API int32_t sfadacof_cuda_abi_version(void);
SFADACOF_CUDA_API char const* sfadacof_cuda_status_string(int32_t status);

// type / offset_type: 0 = float32, 1 = float16. stream: a cudaStream_t (0 = legacy default stream).
SFADACOF_CUDA_API int32_t sfadacof_cuda_synthesis(void const* frame0, void const* frame2, void const* weight1,
    void const* alpha1, void const* beta1, void const* weight2, void const* alpha2, void const* beta2,
    void const* occlusion, void* out, int32_t type, int32_t offset_type, int32_t B, int32_t C, int32_t H, int32_t W,
    int32_t kernel_size, int32_t dilation, void* stream);

// The tiled kernel (launch_synthesis_tiled); arguments as sfadacof_cuda_synthesis.
SFADACOF_CUDA_API int32_t sfadacof_cuda_synthesis_tiled(void const* frame0, void const* frame2, void const* weight1,
    void const* alpha1, void const* beta1, void const* weight2, void const* alpha2, void const* beta2,
    void const* occlusion, void* out, int32_t type, int32_t offset_type, int32_t B, int32_t C, int32_t H, int32_t W,
    int32_t kernel_size, int32_t dilation, void* stream);

SFADACOF_CUDA_API int32_t sfadacof_cuda_synthesis_naive(void const* frame0, void const* frame2, void const* weight1,
    void const* alpha1, void const* beta1, void const* weight2, void const* alpha2, void const* beta2,
    void const* occlusion, void* out, void* o1, void* o2, int32_t type, int32_t offset_type, int32_t B, int32_t C,
    int32_t H, int32_t W, int32_t kernel_size, int32_t dilation, void* stream);

#ifdef __cplusplus
}
#endif
