// C++ CPU kernel of the fused AdaCoF synthesis op, on the same per-pixel arithmetic as the CUDA kernels.
#include "adacof_cpu.h"
#include "adacof_math.h"

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <thread>
#include <vector>

// The row kernel with AVX2 (8 pixels a step, gathers for the bilinear corners), chosen at run time where the CPU
// has AVX2: the library itself is built for the baseline x86-64, so one build serves every x86 CPU. Same arithmetic
// as the scalar path, operation for operation (no FMA: -ffp-contract=off and separate multiply/add intrinsics), so
// both give bit-identical frames (tests/test_plugin_cpu.py checks it).
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define SFADACOF_CPU_AVX2 1
#include <immintrin.h>
#else
#define SFADACOF_CPU_AVX2 0
#endif

namespace
{

struct CpuLoader
{
    static float map(float const* p)
    {
        return *p;
    }
    static float off(float const* p)
    {
        return *p;
    }
    static float frame(float const* p)
    {
        return *p;
    }
};

// What one call computes, per pixel (o_a, o_b: the AdaCoF sums of directions a and b, MODEL.md):
//   fused  (frame_b set):          out = V * o_a + (1 - V) * o_b       the whole op
//   first  (no occlusion):         out = o_a                           direction 1 alone
//   second (first and occlusion):  out = V * first + (1 - V) * o_a     direction 2, blended with direction 1's
// The first/second pair gives the fused result bit for bit (o_1 is stored as the float32 the fused path holds).
struct Job
{
    float const* frame_a;
    float const* weight_a;
    float const* alpha_a;
    float const* beta_a;
    float const* frame_b; // fused only
    float const* weight_b;
    float const* alpha_b;
    float const* beta_b;
    float const* first;     // second only
    float const* occlusion; // fused and second
    float* out;
};

template <int KC>
void run_rows(Job const& t, sfadacof::SynthesisShape const& s, int64_t row_begin, int64_t row_end, int j_begin = 0)
{
    size_t const plane = static_cast<size_t>(s.H) * static_cast<size_t>(s.W);
    size_t const maps = static_cast<size_t>(s.kernel_size) * static_cast<size_t>(s.kernel_size) * plane;
    for (int64_t row = row_begin; row < row_end; ++row) // row = b * H + i
    {
        int const b = static_cast<int>(row / s.H);
        int const i = static_cast<int>(row % s.H);
        size_t const frame_off = static_cast<size_t>(b) * static_cast<size_t>(s.C) * plane;
        size_t const row_off = static_cast<size_t>(i) * static_cast<size_t>(s.W);
        for (int j = j_begin; j < s.W; ++j)
        {
            size_t const pix = row_off + static_cast<size_t>(j);
            size_t const map_off = static_cast<size_t>(b) * maps + pix;
            float const v = t.occlusion ? t.occlusion[static_cast<size_t>(b) * plane + pix] : 0.0f;
            for (int c0 = 0; c0 < s.C; c0 += sfadacof::kChannelsPerPass)
            {
                int const nc = std::min(sfadacof::kChannelsPerPass, s.C - c0);
                float oa[sfadacof::kChannelsPerPass] = {0.0f, 0.0f, 0.0f, 0.0f};
                float ob[sfadacof::kChannelsPerPass] = {0.0f, 0.0f, 0.0f, 0.0f};
                sfadacof::accumulate_direction<KC, CpuLoader>(t.frame_a + frame_off, plane, c0, nc, s.H, s.W,
                    t.weight_a + map_off, t.alpha_a + map_off, t.beta_a + map_off, plane, s.kernel_size, s.dilation,
                    i, j, oa);
                if (t.frame_b)
                {
                    sfadacof::accumulate_direction<KC, CpuLoader>(t.frame_b + frame_off, plane, c0, nc, s.H, s.W,
                        t.weight_b + map_off, t.alpha_b + map_off, t.beta_b + map_off, plane, s.kernel_size,
                        s.dilation, i, j, ob);
                }
                for (int c = 0; c < nc; ++c)
                {
                    size_t const at = frame_off + static_cast<size_t>(c0 + c) * plane + pix;
                    t.out[at] = t.frame_b ? sfadacof::blend(v, oa[c], ob[c])
                                          : (t.first ? sfadacof::blend(v, t.first[at], oa[c]) : oa[c]);
                }
            }
        }
    }
}

#if SFADACOF_CPU_AVX2
// One tap of one direction for the 8-pixel steps of a row: acc[c][j..] += w * bilinear(...). The loop runs tap by
// tap over the whole row (not pixel by pixel over all taps): each pixel still adds its taps in tap order, so the
// sums are the scalar path's, while only this tap's three map rows stream from memory at a time (all 75 of a
// direction at once overran the hardware prefetcher).
__attribute__((target("avx2"))) inline void tap_row8(float const* planes, size_t plane, int C, int H, int W, int steps,
    float const* weight, float const* alpha, float const* beta, int row_base, int col_base, float* acc)
{
    __m256 const max_off = _mm256_set1_ps(sfadacof::kMaxOffset);
    __m256 const min_off = _mm256_set1_ps(-sfadacof::kMaxOffset);
    __m256 const one = _mm256_set1_ps(1.0f);
    __m256i const zero_i = _mm256_setzero_si256();
    __m256i const one_i = _mm256_set1_epi32(1);
    __m256i const h_last = _mm256_set1_epi32(H - 1);
    __m256i const w_last = _mm256_set1_epi32(W - 1);
    __m256i const w_i = _mm256_set1_epi32(W);
    __m256i const lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i const rb = _mm256_set1_epi32(row_base);
    for (int s = 0; s < steps; ++s)
    {
        int const j = s * 8;
        __m256 const w = _mm256_loadu_ps(weight + j);
        __m256 const a = _mm256_loadu_ps(alpha + j);
        __m256 const e = _mm256_loadu_ps(beta + j);
        // split_offset: min_ps(M, v) keeps a NaN v, max_ps(., -M) then gives -M, as fmaxf/fminf do there
        __m256 const ac = _mm256_max_ps(_mm256_min_ps(max_off, a), min_off);
        __m256 const ec = _mm256_max_ps(_mm256_min_ps(max_off, e), min_off);
        __m256i const A = _mm256_cvttps_epi32(ac);
        __m256i const E = _mm256_cvttps_epi32(ec);
        __m256 const fa = _mm256_add_ps(_mm256_sub_ps(ac, _mm256_cvtepi32_ps(A)), _mm256_sub_ps(a, a));
        __m256 const fe = _mm256_add_ps(_mm256_sub_ps(ec, _mm256_cvtepi32_ps(E)), _mm256_sub_ps(e, e));
        __m256i const r = _mm256_add_epi32(rb, A);
        __m256i const c = _mm256_add_epi32(_mm256_add_epi32(_mm256_set1_epi32(col_base + j), lanes), E);
        __m256i const r0 = _mm256_mullo_epi32(_mm256_min_epi32(_mm256_max_epi32(r, zero_i), h_last), w_i);
        __m256i const r1 = _mm256_mullo_epi32(
            _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(r, one_i), zero_i), h_last), w_i);
        __m256i const c0 = _mm256_min_epi32(_mm256_max_epi32(c, zero_i), w_last);
        __m256i const c1 = _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(c, one_i), zero_i), w_last);
        __m256i const i00 = _mm256_add_epi32(r0, c0);
        __m256i const i10 = _mm256_add_epi32(r1, c0);
        __m256i const i01 = _mm256_add_epi32(r0, c1);
        __m256i const i11 = _mm256_add_epi32(r1, c1);
        __m256 const ga = _mm256_sub_ps(one, fa);
        __m256 const ge = _mm256_sub_ps(one, fe);
        for (int ch = 0; ch < C; ++ch)
        {
            float const* p = planes + static_cast<size_t>(ch) * plane;
            __m256 const p00 = _mm256_i32gather_ps(p, i00, 4);
            __m256 const p10 = _mm256_i32gather_ps(p, i10, 4);
            __m256 const p01 = _mm256_i32gather_ps(p, i01, 4);
            __m256 const p11 = _mm256_i32gather_ps(p, i11, 4);
            // bilinear: p00 * ga * ge + p10 * fa * ge + p01 * ga * fe + p11 * fa * fe, left to right
            __m256 bil = _mm256_mul_ps(_mm256_mul_ps(p00, ga), ge);
            bil = _mm256_add_ps(bil, _mm256_mul_ps(_mm256_mul_ps(p10, fa), ge));
            bil = _mm256_add_ps(bil, _mm256_mul_ps(_mm256_mul_ps(p01, ga), fe));
            bil = _mm256_add_ps(bil, _mm256_mul_ps(_mm256_mul_ps(p11, fa), fe));
            float* acc_c = acc + static_cast<size_t>(ch) * static_cast<size_t>(W) + j;
            _mm256_storeu_ps(acc_c, _mm256_add_ps(_mm256_loadu_ps(acc_c), _mm256_mul_ps(w, bil)));
        }
    }
}

// One direction's sums for the 8-pixel steps of row i (C x W floats in acc, zeroed here).
__attribute__((target("avx2"))) void direction_row8(float const* frame, size_t plane, sfadacof::SynthesisShape const& s,
    float const* weight, float const* alpha, float const* beta, int i, int steps, float* acc)
{
    std::fill(acc, acc + static_cast<size_t>(s.C) * static_cast<size_t>(s.W), 0.0f);
    int const K = s.kernel_size;
    int const pad = sfadacof::adacof_kernel_pad(K, s.dilation);
    for (int k = 0; k < K; ++k)
    {
        for (int l = 0; l < K; ++l)
        {
            size_t const t = static_cast<size_t>(k * K + l) * plane;
            tap_row8(frame, plane, s.C, s.H, s.W, steps, weight + t, alpha + t, beta + t, i + k * s.dilation - pad,
                l * s.dilation - pad, acc);
        }
    }
}

// Rows [row_begin, row_end) with the AVX2 steps; the last W % 8 pixels of a row go through the scalar path.
__attribute__((target("avx2"))) void run_rows_avx2(
    Job const& t, sfadacof::SynthesisShape const& s, int64_t row_begin, int64_t row_end)
{
    size_t const plane = static_cast<size_t>(s.H) * static_cast<size_t>(s.W);
    size_t const maps = static_cast<size_t>(s.kernel_size) * static_cast<size_t>(s.kernel_size) * plane;
    size_t const row_floats = static_cast<size_t>(s.C) * static_cast<size_t>(s.W);
    std::vector<float> oa(row_floats), ob(t.frame_b ? row_floats : 0);
    __m256 const one = _mm256_set1_ps(1.0f);
    int const steps = s.W / 8;
    int const tail = steps * 8;
    for (int64_t row = row_begin; row < row_end; ++row) // row = b * H + i
    {
        int const b = static_cast<int>(row / s.H);
        int const i = static_cast<int>(row % s.H);
        size_t const frame_off = static_cast<size_t>(b) * static_cast<size_t>(s.C) * plane;
        size_t const row_off = static_cast<size_t>(i) * static_cast<size_t>(s.W);
        size_t const map_off = static_cast<size_t>(b) * maps + row_off;
        if (steps > 0)
        {
            direction_row8(t.frame_a + frame_off, plane, s, t.weight_a + map_off, t.alpha_a + map_off,
                t.beta_a + map_off, i, steps, oa.data());
            if (t.frame_b)
            {
                direction_row8(t.frame_b + frame_off, plane, s, t.weight_b + map_off, t.alpha_b + map_off,
                    t.beta_b + map_off, i, steps, ob.data());
            }
            float const* occ = t.occlusion ? t.occlusion + static_cast<size_t>(b) * plane + row_off : nullptr;
            for (int c = 0; c < s.C; ++c)
            {
                size_t const at = frame_off + static_cast<size_t>(c) * plane + row_off;
                float const* a_c = oa.data() + static_cast<size_t>(c) * static_cast<size_t>(s.W);
                float const* b_c = t.frame_b ? ob.data() + static_cast<size_t>(c) * static_cast<size_t>(s.W) : nullptr;
                for (int j = 0; j < tail; j += 8)
                {
                    __m256 px = _mm256_loadu_ps(a_c + j);
                    if (occ)
                    {
                        // blend: v * o1 + (1 - v) * o2
                        __m256 const v = _mm256_loadu_ps(occ + j);
                        __m256 const gv = _mm256_sub_ps(one, v);
                        px = b_c ? _mm256_add_ps(_mm256_mul_ps(v, px), _mm256_mul_ps(gv, _mm256_loadu_ps(b_c + j)))
                                 : _mm256_add_ps(_mm256_mul_ps(v, _mm256_loadu_ps(t.first + at + j)),
                                     _mm256_mul_ps(gv, px));
                    }
                    _mm256_storeu_ps(t.out + at + j, px);
                }
            }
        }
    }
    if (tail < s.W) // the scalar path for the last columns: the same rows, one pixel at a time
    {
        run_rows<0>(t, s, row_begin, row_end, tail);
    }
}
#endif

// The path the kernel takes on this CPU: "avx2" where the CPU has it (unless SFADACOF_CPU_SIMD=0 asks for the
// scalar path, for comparisons), else "scalar".
bool use_avx2()
{
#if SFADACOF_CPU_AVX2
    char const* env = std::getenv("SFADACOF_CPU_SIMD");
    if (env != nullptr && env[0] == '0' && env[1] == '\0')
    {
        return false;
    }
    return __builtin_cpu_supports("avx2");
#else
    return false;
#endif
}

void run_rows_dispatch(Job const& t, sfadacof::SynthesisShape const& s, int64_t row_begin, int64_t row_end, bool avx2)
{
#if SFADACOF_CPU_AVX2
    if (avx2)
    {
        run_rows_avx2(t, s, row_begin, row_end);
        return;
    }
#else
    (void) avx2;
#endif
    switch (s.kernel_size)
    {
    case 5: run_rows<5>(t, s, row_begin, row_end); break;
    default: run_rows<0>(t, s, row_begin, row_end); break;
    }
}

int32_t run_job(Job const& t, bool null_pointer, int32_t B, int32_t C, int32_t H, int32_t W, int32_t kernel_size,
    int32_t dilation, int32_t num_threads)
{
    if (!sfadacof::adacof_params_valid(kernel_size, dilation))
    {
        return SFADACOF_CPU_BAD_PARAMS;
    }
    if (B < 0 || C < 0 || H < 0 || W < 0)
    {
        return SFADACOF_CPU_BAD_SHAPE;
    }
    // Row/column indices are int (plane index r * W + c): one plane must stay below 2^31 elements.
    if (static_cast<int64_t>(H) * W > std::numeric_limits<int32_t>::max())
    {
        return SFADACOF_CPU_BAD_SHAPE;
    }
    int64_t const rows = static_cast<int64_t>(B) * H;
    if (rows == 0 || W == 0 || C == 0)
    {
        return SFADACOF_CPU_OK;
    }
    if (null_pointer)
    {
        return SFADACOF_CPU_NULL_POINTER;
    }
    sfadacof::SynthesisShape const s{B, C, H, W, kernel_size, dilation};
    bool const avx2 = use_avx2();
    int64_t n = num_threads > 0 ? num_threads : static_cast<int64_t>(std::thread::hardware_concurrency());
    n = std::max<int64_t>(1, std::min<int64_t>(n, rows));
    if (n == 1)
    {
        run_rows_dispatch(t, s, 0, rows, avx2);
        return SFADACOF_CPU_OK;
    }
    std::vector<std::thread> workers;
    workers.reserve(static_cast<size_t>(n - 1));
    int64_t const chunk = (rows + n - 1) / n;
    for (int64_t w = 1; w < n; ++w)
    {
        int64_t const begin = std::min(rows, w * chunk);
        int64_t const end = std::min(rows, begin + chunk);
        workers.emplace_back(run_rows_dispatch, std::cref(t), std::cref(s), begin, end, avx2);
    }
    run_rows_dispatch(t, s, 0, std::min(rows, chunk), avx2);
    for (auto& worker : workers)
    {
        worker.join();
    }
    return SFADACOF_CPU_OK;
}

} // namespace

extern "C" {

int32_t sfadacof_cpu_abi_version(void)
{
    return SFADACOF_CPU_ABI_VERSION;
}

char const* sfadacof_cpu_simd_path(void)
{
    return use_avx2() ? "avx2" : "scalar";
}

char const* sfadacof_cpu_status_string(int32_t status)
{
    switch (status)
    {
    case SFADACOF_CPU_OK: return "ok";
    case SFADACOF_CPU_BAD_PARAMS:
        return "invalid kernel_size/dilation: need 1 <= kernel_size <= 64, 1 <= dilation <= 64 and "
               "(kernel_size - 1) * dilation even";
    case SFADACOF_CPU_BAD_SHAPE: return "invalid shape: negative size or more elements than the kernel indexes";
    case SFADACOF_CPU_NULL_POINTER: return "null tensor pointer";
    default: return "unknown status";
    }
}

int32_t sfadacof_cpu_synthesis_f32(float const* frame0, float const* frame2, float const* weight1,
    float const* alpha1, float const* beta1, float const* weight2, float const* alpha2, float const* beta2,
    float const* occlusion, float* out, int32_t B, int32_t C, int32_t H, int32_t W, int32_t kernel_size,
    int32_t dilation, int32_t num_threads)
{
    bool const null = !frame0 || !frame2 || !weight1 || !alpha1 || !beta1 || !weight2 || !alpha2 || !beta2
        || !occlusion || !out;
    Job const t{frame0, weight1, alpha1, beta1, frame2, weight2, alpha2, beta2, nullptr, occlusion, out};
    return run_job(t, null, B, C, H, W, kernel_size, dilation, num_threads);
}

int32_t sfadacof_cpu_direction_f32(float const* frame, float const* weight, float const* alpha, float const* beta,
    float const* first, float const* occlusion, float* out, int32_t B, int32_t C, int32_t H, int32_t W,
    int32_t kernel_size, int32_t dilation, int32_t num_threads)
{
    bool const null = !frame || !weight || !alpha || !beta || !out || (!first != !occlusion);
    Job const t{frame, weight, alpha, beta, nullptr, nullptr, nullptr, nullptr, first, occlusion, out};
    return run_job(t, null, B, C, H, W, kernel_size, dilation, num_threads);
}

} // extern "C"
