// CUDA launchers of the fused AdaCoF synthesis op (fp32 and fp16 tensors, NCHW linear): launch_synthesis is the
// kernel the TensorRT plugin's enqueue runs (adacof_kernels.cu); launch_synthesis_naive, the original-style
// baseline, is defined in adacof_naive.cu and linked into libsfadacof_cuda only (tests, benchmark), never into the
// plugin library. Python reaches both through the extern "C" functions (plugins/cuda_op.py).
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
#define SFADACOF_CUDA_ABI_VERSION 2 // 2: the tiled kernel and SFADACOF_CUDA_UNSUPPORTED removed (issue 22)

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

// The fused kernel (the one the plugin runs): a thread computes 4 consecutive pixels of a row, 3 channels, both
// directions and the blend; vector loads of the maps where W % 4 == 0 and the tensors are aligned, scalar loads
// otherwise. Returns 0 or a cudaError_t / SFADACOF_CUDA_* code.
int32_t launch_synthesis(SynthesisLaunch const& p, cudaStream_t stream);

// The original-style implementation (the AdaCoF repository's layout): one thread per output element (b, c, i, j)
// and one launch per direction into o1 / o2 (each B*C*H*W elements of `type`), then a blend kernel. Tests and
// benchmark only (adacof_naive.cu, in libsfadacof_cuda, not in the plugin library).
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

SFADACOF_CUDA_API int32_t sfadacof_cuda_synthesis_naive(void const* frame0, void const* frame2, void const* weight1,
    void const* alpha1, void const* beta1, void const* weight2, void const* alpha2, void const* beta2,
    void const* occlusion, void* out, void* o1, void* o2, int32_t type, int32_t offset_type, int32_t B, int32_t C,
    int32_t H, int32_t W, int32_t kernel_size, int32_t dilation, void* stream);

#ifdef __cplusplus
}
#endif
