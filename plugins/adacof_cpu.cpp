// C++ CPU kernel of the fused AdaCoF synthesis op, on the same per-pixel arithmetic as the CUDA kernels.
#include "adacof_cpu.h"
#include "adacof_math.h"

#include <algorithm>
#include <limits>
#include <thread>
#include <vector>

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

template <int KC>
void run_rows(sfadacof::SynthesisTensors<float, float> const& t, sfadacof::SynthesisShape const& s, int64_t row_begin,
    int64_t row_end)
{
    size_t const plane = static_cast<size_t>(s.H) * static_cast<size_t>(s.W);
    for (int64_t row = row_begin; row < row_end; ++row) // row = b * H + i
    {
        int const b = static_cast<int>(row / s.H);
        int const i = static_cast<int>(row % s.H);
        float* out_b = t.out + static_cast<size_t>(b) * static_cast<size_t>(s.C) * plane
            + static_cast<size_t>(i) * static_cast<size_t>(s.W);
        for (int j = 0; j < s.W; ++j)
        {
            for (int c0 = 0; c0 < s.C; c0 += sfadacof::kChannelsPerPass)
            {
                int const nc = std::min(sfadacof::kChannelsPerPass, s.C - c0);
                float px[sfadacof::kChannelsPerPass];
                sfadacof::synthesis_pixel<KC, CpuLoader>(t, s, b, i, j, c0, nc, px);
                for (int c = 0; c < nc; ++c)
                {
                    out_b[static_cast<size_t>(c0 + c) * plane + static_cast<size_t>(j)] = px[c];
                }
            }
        }
    }
}

void run_rows_dispatch(sfadacof::SynthesisTensors<float, float> const& t, sfadacof::SynthesisShape const& s,
    int64_t row_begin, int64_t row_end)
{
    switch (s.kernel_size)
    {
    case 5: run_rows<5>(t, s, row_begin, row_end); break;
    default: run_rows<0>(t, s, row_begin, row_end); break;
    }
}

} // namespace

extern "C" {

int32_t sfadacof_cpu_abi_version(void)
{
    return SFADACOF_CPU_ABI_VERSION;
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
    if (!frame0 || !frame2 || !weight1 || !alpha1 || !beta1 || !weight2 || !alpha2 || !beta2 || !occlusion || !out)
    {
        return SFADACOF_CPU_NULL_POINTER;
    }
    sfadacof::SynthesisTensors<float, float> const t{
        frame0, frame2, weight1, alpha1, beta1, weight2, alpha2, beta2, occlusion, out};
    sfadacof::SynthesisShape const s{B, C, H, W, kernel_size, dilation};

    int64_t n = num_threads > 0 ? num_threads : static_cast<int64_t>(std::thread::hardware_concurrency());
    n = std::max<int64_t>(1, std::min<int64_t>(n, rows));
    if (n == 1)
    {
        run_rows_dispatch(t, s, 0, rows);
        return SFADACOF_CPU_OK;
    }
    std::vector<std::thread> workers;
    workers.reserve(static_cast<size_t>(n - 1));
    int64_t const chunk = (rows + n - 1) / n;
    for (int64_t w = 1; w < n; ++w)
    {
        int64_t const begin = std::min(rows, w * chunk);
        int64_t const end = std::min(rows, begin + chunk);
        workers.emplace_back(run_rows_dispatch, std::cref(t), std::cref(s), begin, end);
    }
    run_rows_dispatch(t, s, 0, std::min(rows, chunk));
    for (auto& worker : workers)
    {
        worker.join();
    }
    return SFADACOF_CPU_OK;
}

} // extern "C"
