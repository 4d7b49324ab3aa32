// C API of the C++ CPU kernel of the fused AdaCoF synthesis op (libsfadacof_cpu): float32, NCHW, contiguous.
// No CUDA or TensorRT dependency. Python: plugins/cpu_op.py. Arithmetic: plugins/adacof_math.h.
#pragma once

#include <stdint.h>

#if defined(_WIN32)
#define SFADACOF_CPU_API __declspec(dllexport)
#else
#define SFADACOF_CPU_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

// Bumped when a signature below changes; plugins/cpu_op.py refuses a library with another version.
#define SFADACOF_CPU_ABI_VERSION 2

enum SfadacofCpuStatus
{
    SFADACOF_CPU_OK = 0,
    SFADACOF_CPU_BAD_PARAMS = 1,  // kernel_size/dilation out of range, or (K-1)*d odd
    SFADACOF_CPU_BAD_SHAPE = 2,   // a negative size, or an index that would overflow
    SFADACOF_CPU_NULL_POINTER = 3 // a null tensor pointer with a non-empty shape
};

SFADACOF_CPU_API int32_t sfadacof_cpu_abi_version(void);
SFADACOF_CPU_API char const* sfadacof_cpu_status_string(int32_t status);
// The path sfadacof_cpu_synthesis_f32 takes on this CPU now: "avx2" (8 pixels a step) or "scalar" (no AVX2, a
// non-x86 build, or SFADACOF_CPU_SIMD=0 in the environment). Both give bit-identical results.
SFADACOF_CPU_API char const* sfadacof_cpu_simd_path(void);

// frame1 = V * o1 + (1 - V) * o2 with o1 = AdaCoF(frame0 replication-padded, weight1, alpha1, beta1), o2 likewise.
// frame0, frame2, out: (B, C, H, W); weight*, alpha*, beta*: (B, K*K, H, W); occlusion: (B, 1, H, W).
// num_threads <= 0: one thread per hardware thread. Inputs are only read; out is fully written.
SFADACOF_CPU_API int32_t sfadacof_cpu_synthesis_f32(float const* frame0, float const* frame2, float const* weight1,
    float const* alpha1, float const* beta1, float const* weight2, float const* alpha2, float const* beta2,
    float const* occlusion, float* out, int32_t B, int32_t C, int32_t H, int32_t W, int32_t kernel_size,
    int32_t dilation, int32_t num_threads);

// The op in two steps, for callers that hold one direction's maps at a time: with first and occlusion null,
// out = AdaCoF(frame replication-padded, weight, alpha, beta) (direction 1's o1); with both set,
// out = V * first + (1 - V) * AdaCoF(frame, ...) (direction 2, blended with first = o1). Chained, the two steps give
// sfadacof_cpu_synthesis_f32's frame1 bit for bit. One of first/occlusion set without the other: NULL_POINTER.
SFADACOF_CPU_API int32_t sfadacof_cpu_direction_f32(float const* frame, float const* weight, float const* alpha,
    float const* beta, float const* first, float const* occlusion, float* out, int32_t B, int32_t C, int32_t H,
    int32_t W, int32_t kernel_size, int32_t dilation, int32_t num_threads);

#ifdef __cplusplus
}
#endif
