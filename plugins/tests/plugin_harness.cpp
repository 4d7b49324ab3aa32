// Drives libsfadacof_trt_plugin the way TensorRT does, without libnvinfer: dlopen + getCreators/setLoggerFinder,
// creator -> createPlugin (build phase, fields as the ONNX parser passes them) -> capability interfaces ->
// getOutputDataTypes / getOutputShapes (with a stand-in IExprBuilder) / supportsFormatCombination (every
// combination TensorRT could propose) / configurePlugin / getWorkspaceSize -> clone -> getFieldsToSerialize ->
// copy of the fields as a serialised engine would hold them -> createPlugin (runtime phase) -> attachToContext ->
// onShapeChange -> enqueue (fp32, fp16, fp16 + fp32 offsets) against the C++ CPU kernel when a CUDA device exists,
// and a CUDA-graph capture + replay of each enqueue (no synchronisation or allocation inside it).
//
// The harness also stands in for libnvinfer's version functions and plugin registry: it exports
// getInferLibVersion / getInferLibMajorVersion (its own headers' major, or --runtime-major N) and a recording
// getPluginRegistry, which the plugin finds with dlsym(RTLD_DEFAULT, ...) as it would find libnvinfer's.
// Cross-major runs (this harness built with 10.x headers, the plugin with 11.x, or the reverse) check that the
// plugin never calls the harness's ILoggerFinder/ILogger (it must log to stderr instead) and registers nothing.
//
//   sfadacof_plugin_harness [--runtime-major N] [--register-lib PATH [--preregistered]] PLUGIN
//     PLUGIN          path/to/libsfadacof_trt_plugin.so (any TensorRT major)
//     --runtime-major the major the emulated runtime reports (default: this harness's headers' major)
//     --register-lib  path/to/libsfadacof_trt_register.so: dlopen it and check its static registration (exactly
//                     once, the creator's name/version/namespace, when the majors agree; never otherwise)
//     --preregistered the registry already holds the creator (from PLUGIN): the register library must skip it
//   exit status 0 = every check passed
#include <NvInferRuntime.h>
#include <NvInferVersion.h>

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include "adacof_cpu.h"
#include "fake_registry.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

using namespace nvinfer1;

namespace
{

int32_t gRuntimeMajor = NV_TENSORRT_MAJOR;

sfadacof_test::FakeRegistry gRegistry;
int gRegistryLookups = 0;

} // namespace

// libnvinfer's functions, as the plugin looks them up (dlsym(RTLD_DEFAULT, ...); exported by -rdynamic).
#pragma GCC visibility push(default)
extern "C" int32_t getInferLibMajorVersion() noexcept
{
    return gRuntimeMajor;
}
extern "C" int32_t getInferLibVersion() noexcept
{
    return (gRuntimeMajor * 100 + NV_TENSORRT_MINOR) * 100 + NV_TENSORRT_PATCH;
}
extern "C" nvinfer1::IPluginRegistry* getPluginRegistry() noexcept
{
    ++gRegistryLookups;
    return &gRegistry;
}
#pragma GCC visibility pop

namespace
{

int gFailures = 0;
int gChecks = 0;

#define CHECK(cond, ...)                                                                                               \
    do                                                                                                                 \
    {                                                                                                                  \
        ++gChecks;                                                                                                     \
        if (!(cond))                                                                                                   \
        {                                                                                                              \
            ++gFailures;                                                                                               \
            std::printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                                                \
            std::printf(__VA_ARGS__);                                                                                  \
            std::printf("\n");                                                                                         \
        }                                                                                                              \
    } while (0)

class HarnessLogger : public ILogger
{
public:
    void log(Severity severity, AsciiChar const* msg) noexcept override
    {
        if (severity <= Severity::kWARNING)
        {
            ++errors;
            if (verbose) // not a deliberate failure of the harness
            {
                ++unexpected;
                last = msg;
                std::printf("  [plugin log] %s\n", msg);
            }
        }
    }
    int errors = 0;     // all errors and warnings
    int unexpected = 0; // those logged while verbose (no failure was provoked)
    std::string last;
    bool verbose = true;
};

class HarnessLoggerFinder : public ILoggerFinder
{
public:
    explicit HarnessLoggerFinder(ILogger* logger)
        : mLogger(logger)
    {
    }
    ILogger* findLogger() override
    {
        return mLogger;
    }
    ~HarnessLoggerFinder() override = default;

private:
    ILogger* mLogger;
};

// ---- a stand-in for TensorRT's symbolic dimension expressions
class ExprImpl : public apiv::VDimensionExpr
{
public:
    ExprImpl(bool constant, int64_t value, std::string text)
        : mConstant(constant)
        , mValue(value)
        , text(std::move(text))
    {
    }
    bool isConstant() const override
    {
        return mConstant;
    }
    int64_t getConstantValue() const override
    {
        return mConstant ? mValue : -1;
    }
    bool isSizeTensor() const override
    {
        return false;
    }
    bool mConstant;
    int64_t mValue;
    std::string text;
};

class Expr : public IDimensionExpr
{
public:
    explicit Expr(ExprImpl* impl)
    {
        mImpl = impl;
    }
    ~Expr() noexcept override = default;
    ExprImpl const* impl() const
    {
        return static_cast<ExprImpl const*>(mImpl);
    }
};

class ExprStore : public apiv::VExprBuilder
{
public:
    IDimensionExpr const* make(bool constant, int64_t value, std::string const& text)
    {
        mImpls.emplace_back(new ExprImpl(constant, value, text));
        mExprs.emplace_back(new Expr(mImpls.back().get()));
        return mExprs.back().get();
    }
    IDimensionExpr const* constant(int64_t value) override
    {
        return make(true, value, std::to_string(value));
    }
    IDimensionExpr const* operation(
        DimensionOperation /* op */, IDimensionExpr const& first, IDimensionExpr const& second) override
    {
        return make(false, -1,
            "op(" + static_cast<Expr const&>(first).impl()->text + "," + static_cast<Expr const&>(second).impl()->text
                + ")");
    }
    IDimensionExpr const* declareSizeTensor(int32_t, IDimensionExpr const&, IDimensionExpr const&) override
    {
        return nullptr;
    }

private:
    std::vector<std::unique_ptr<ExprImpl>> mImpls;
    std::vector<std::unique_ptr<Expr>> mExprs;
};

class Builder : public IExprBuilder
{
public:
    explicit Builder(ExprStore* store)
    {
        mImpl = store;
    }
    ~Builder() noexcept override = default;
};

Dims dims4(int64_t b, int64_t c, int64_t h, int64_t w)
{
    Dims d{};
    d.nbDims = 4;
    d.d[0] = b;
    d.d[1] = c;
    d.d[2] = h;
    d.d[3] = w;
    return d;
}

std::vector<Dims> inputDims(int64_t b, int64_t c, int64_t h, int64_t w, int64_t k)
{
    std::vector<Dims> d;
    d.push_back(dims4(b, c, h, w));
    d.push_back(dims4(b, c, h, w));
    for (int i = 0; i < 6; ++i)
    {
        d.push_back(dims4(b, k * k, h, w));
    }
    d.push_back(dims4(b, 1, h, w));
    return d;
}

// Counts the complete type/format assignments accepted under TensorRT's protocol (pos decided on inOut[0..pos]).
void enumerateFormats(IPluginV3OneBuild* build, std::vector<DynamicPluginTensorDesc>& io, int pos,
    std::vector<std::string>& accepted, std::string prefix)
{
    static DataType const kTypes[] = {DataType::kFLOAT, DataType::kHALF, DataType::kINT8, DataType::kINT32,
        DataType::kBF16};
    static char const* const kNames[] = {"f32", "f16", "i8", "i32", "bf16"};
    static TensorFormat const kFormats[] = {TensorFormat::kLINEAR, TensorFormat::kCHW32, TensorFormat::kHWC8};
    if (pos == static_cast<int>(io.size()))
    {
        accepted.push_back(prefix);
        return;
    }
    for (int t = 0; t < 5; ++t)
    {
        for (int f = 0; f < 3; ++f)
        {
            io[pos].desc.type = kTypes[t];
            io[pos].desc.format = kFormats[f];
            if (build->supportsFormatCombination(pos, io.data(), 9, 1))
            {
                CHECK(f == 0, "non-linear format accepted at pos %d", pos);
                enumerateFormats(build, io, pos + 1, accepted, prefix + (pos ? "," : "") + kNames[t]);
            }
        }
    }
}

// A serialised engine holds the field names and bytes, not the plugin's pointers: deep copy.
struct FieldCopy
{
    std::vector<std::string> names;
    std::vector<std::vector<char>> data;
    std::vector<PluginField> fields;
    PluginFieldCollection fc{};
    explicit FieldCopy(PluginFieldCollection const* src)
    {
        for (int i = 0; i < src->nbFields; ++i)
        {
            names.emplace_back(src->fields[i].name);
            size_t const bytes = src->fields[i].type == PluginFieldType::kINT32 ? 4u * src->fields[i].length : 0u;
            char const* p = static_cast<char const*>(src->fields[i].data);
            data.emplace_back(p, p + bytes);
        }
        for (int i = 0; i < src->nbFields; ++i)
        {
            fields.emplace_back(names[i].c_str(), data[i].data(), src->fields[i].type, src->fields[i].length);
        }
        fc.nbFields = static_cast<int32_t>(fields.size());
        fc.fields = fields.data();
    }
};

int32_t fieldInt(PluginFieldCollection const* fc, char const* name)
{
    for (int i = 0; i < fc->nbFields; ++i)
    {
        if (std::strcmp(fc->fields[i].name, name) == 0 && fc->fields[i].type == PluginFieldType::kINT32)
        {
            return *static_cast<int32_t const*>(fc->fields[i].data);
        }
    }
    return -1000;
}

IPluginV3* create(IPluginCreatorV3One* creator, int32_t const* k, int32_t const* d, TensorRTPhase phase,
    int32_t const* fp16Offsets = nullptr)
{
    std::vector<PluginField> f;
    if (fp16Offsets)
    {
        f.emplace_back("fp16_offsets", fp16Offsets, PluginFieldType::kINT32, 1);
    }
    if (k)
    {
        f.emplace_back("kernel_size", k, PluginFieldType::kINT32, 1);
    }
    if (d)
    {
        f.emplace_back("dilation", d, PluginFieldType::kINT32, 1);
    }
    PluginFieldCollection fc{static_cast<int32_t>(f.size()), f.data()};
    return creator->createPlugin("adacof_node", &fc, phase);
}

uint16_t toHalfBits(float x)
{
    __half_raw const raw = __float2half_rn(x);
    return raw.x;
}

float fromHalfBits(uint16_t bits)
{
    __half_raw raw;
    raw.x = bits;
    return __half2float(__half(raw));
}

// enqueue on a real device against the CPU kernel. Returns false if no device (skipped).
bool runEnqueue(IPluginV3OneRuntime* runtime, int32_t k, int32_t dil, DataType type, DataType offType, double tol)
{
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0)
    {
        cudaGetLastError();
        return false;
    }
    int const B = 2, C = 3, H = 37, W = 45;
    std::vector<Dims> dims = inputDims(B, C, H, W, k);
    std::mt19937 rng(123);
    std::uniform_real_distribution<float> u01(0.f, 1.f), uoff(-9.f, 9.f);
    std::vector<std::vector<float>> host(9);
    for (int i = 0; i < 9; ++i)
    {
        size_t n = 1;
        for (int a = 0; a < 4; ++a)
        {
            n *= static_cast<size_t>(dims[i].d[a]);
        }
        host[i].resize(n);
        bool const offset = (i == 3 || i == 4 || i == 6 || i == 7);
        for (auto& v : host[i])
        {
            v = offset ? uoff(rng) : u01(rng);
        }
        if (i == 2 || i == 5) // weights: normalise over taps
        {
            size_t const plane = static_cast<size_t>(H) * W;
            for (int b = 0; b < B; ++b)
                for (size_t p = 0; p < plane; ++p)
                {
                    float s = 0.f;
                    for (int t = 0; t < k * k; ++t)
                        s += host[i][(static_cast<size_t>(b) * k * k + t) * plane + p];
                    for (int t = 0; t < k * k; ++t)
                        host[i][(static_cast<size_t>(b) * k * k + t) * plane + p] /= s;
                }
        }
        bool const half = offset ? offType == DataType::kHALF : type == DataType::kHALF;
        if (half) // the CPU reference sees the rounded values the GPU sees
        {
            for (auto& v : host[i])
            {
                v = fromHalfBits(toHalfBits(v));
            }
        }
    }
    size_t const outN = static_cast<size_t>(B) * C * H * W;
    std::vector<float> ref(outN);
    int32_t const st = sfadacof_cpu_synthesis_f32(host[0].data(), host[1].data(), host[2].data(), host[3].data(),
        host[4].data(), host[5].data(), host[6].data(), host[7].data(), host[8].data(), ref.data(), B, C, H, W, k,
        dil, 0);
    CHECK(st == 0, "CPU kernel status %d", st);

    std::vector<void*> dev(10, nullptr);
    std::vector<PluginTensorDesc> in(9);
    for (int i = 0; i < 9; ++i)
    {
        bool const offset = (i == 3 || i == 4 || i == 6 || i == 7);
        DataType const t = offset ? offType : type;
        in[i].dims = dims[i];
        in[i].type = t;
        in[i].format = TensorFormat::kLINEAR;
        in[i].scale = -1.f;
        size_t const n = host[i].size();
        if (t == DataType::kHALF)
        {
            std::vector<uint16_t> h(n);
            for (size_t e = 0; e < n; ++e)
                h[e] = toHalfBits(host[i][e]);
            cudaMalloc(&dev[i], n * 2);
            cudaMemcpy(dev[i], h.data(), n * 2, cudaMemcpyHostToDevice);
        }
        else
        {
            cudaMalloc(&dev[i], n * 4);
            cudaMemcpy(dev[i], host[i].data(), n * 4, cudaMemcpyHostToDevice);
        }
    }
    size_t const outBytes = outN * (type == DataType::kHALF ? 2 : 4);
    cudaMalloc(&dev[9], outBytes);
    PluginTensorDesc out{dims[0], type, TensorFormat::kLINEAR, -1.f};
    CHECK(runtime->onShapeChange(in.data(), 9, &out, 1) == 0, "onShapeChange");
    cudaStream_t stream;
    cudaStreamCreate(&stream);
    void* outputs[1] = {dev[9]};
    int32_t const rc = runtime->enqueue(in.data(), &out, dev.data(), outputs, nullptr, stream);
    CHECK(rc == 0, "enqueue returned %d", rc);
    cudaStreamSynchronize(stream);
    std::vector<float> got(outN);
    if (type == DataType::kHALF)
    {
        std::vector<uint16_t> h(outN);
        cudaMemcpy(h.data(), dev[9], outN * 2, cudaMemcpyDeviceToHost);
        for (size_t e = 0; e < outN; ++e)
            got[e] = fromHalfBits(h[e]);
    }
    else
    {
        cudaMemcpy(got.data(), dev[9], outN * 4, cudaMemcpyDeviceToHost);
    }
    double maxErr = 0, maxRef = 1;
    for (size_t e = 0; e < outN; ++e)
    {
        maxErr = std::fmax(maxErr, std::fabs(static_cast<double>(got[e]) - ref[e]));
        maxRef = std::fmax(maxRef, std::fabs(static_cast<double>(ref[e])));
    }
    std::printf("  enqueue K=%d d=%d type=%s offsets=%s: max |plugin - CPU kernel| / max(1,|ref|) = %.3g (bound %.1g)\n",
        k, dil, type == DataType::kHALF ? "f16" : "f32", offType == DataType::kHALF ? "f16" : "f32",
        maxErr / maxRef, tol);
    CHECK(maxErr / maxRef <= tol, "enqueue error %.3g > %.3g", maxErr / maxRef, tol);

    // CUDA-graph capture of enqueue (global mode: a synchronising or allocating call inside enqueue invalidates the
    // capture), then a replay into a cleared output must give the same bytes as the direct launch.
    {
        std::vector<unsigned char> direct(outBytes), replay(outBytes);
        cudaMemcpy(direct.data(), dev[9], outBytes, cudaMemcpyDeviceToHost);
        cudaMemset(dev[9], 0, outBytes);
        cudaDeviceSynchronize();
        cudaGraph_t graph = nullptr;
        cudaGraphExec_t exec = nullptr;
        cudaError_t e = cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal);
        int32_t const crc = e == cudaSuccess ? runtime->enqueue(in.data(), &out, dev.data(), outputs, nullptr, stream)
                                             : -1;
        cudaError_t const ee = cudaStreamEndCapture(stream, &graph);
        bool captured = e == cudaSuccess && crc == 0 && ee == cudaSuccess && graph != nullptr;
        size_t nodes = 0;
        if (captured)
        {
            cudaGraphGetNodes(graph, nullptr, &nodes);
            captured = cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess && cudaGraphLaunch(exec, stream) == cudaSuccess
                && cudaStreamSynchronize(stream) == cudaSuccess;
        }
        cudaMemcpy(replay.data(), dev[9], outBytes, cudaMemcpyDeviceToHost);
        bool const same = captured && std::memcmp(direct.data(), replay.data(), outBytes) == 0;
        std::printf("  graph capture of enqueue K=%d d=%d type=%s offsets=%s: captured=%d nodes=%zu replay==direct=%d\n",
            k, dil, type == DataType::kHALF ? "f16" : "f32", offType == DataType::kHALF ? "f16" : "f32",
            captured ? 1 : 0, nodes, same ? 1 : 0);
        CHECK(captured, "CUDA-graph capture of enqueue failed (begin %d, enqueue %d, end %d)", static_cast<int>(e), crc,
            static_cast<int>(ee));
        CHECK(nodes == 1, "enqueue captured %zu graph nodes, expected one kernel", nodes);
        CHECK(same, "graph replay differs from the direct enqueue");
        if (exec)
            cudaGraphExecDestroy(exec);
        if (graph)
            cudaGraphDestroy(graph);
        cudaGetLastError();
    }
    for (void* p : dev)
        cudaFree(p);
    cudaStreamDestroy(stream);
    CHECK(cudaGetLastError() == cudaSuccess, "CUDA error");
    return true;
}

// dlopen the register library (as polygraphy --plugins / ctypes.CDLL do) and check what it did to the registry.
void checkStaticRegistration(char const* path, int32_t pluginMajor, IPluginCreatorInterface* preregister)
{
    bool const sameMajor = pluginMajor == gRuntimeMajor;
    gRegistry.registrations.clear();
    gRegistry.creators.clear();
    if (preregister != nullptr && sameMajor)
    {
        gRegistry.creators.push_back(preregister); // e.g. the plugin proper, loaded through loadLibrary
    }
    gRegistry.calls = 0;
    gRegistryLookups = 0;
    void* reg = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    CHECK(reg != nullptr, "dlopen %s: %s", path, dlerror());
    if (reg == nullptr)
        return;
    CHECK(dlsym(reg, "getCreators") == nullptr, "the register library exports getCreators (loadLibrary would "
                                                "register its creator twice)");
    size_t const expected = sameMajor && preregister == nullptr ? 1 : 0;
    CHECK(gRegistry.registrations.size() == expected, "%zu registrations, expected %zu (runtime major %d, plugin %d)",
        gRegistry.registrations.size(), expected, gRuntimeMajor, pluginMajor);
    if (!sameMajor)
    {
        CHECK(gRegistryLookups == 0 && gRegistry.calls == 0, "a registry of another major was called");
    }
    for (auto const& r : gRegistry.registrations)
    {
        CHECK(r.name == "AdaCoFSynthesis" && r.version == "1" && r.creatorNamespace == "sfadacof"
                && r.argNamespace == "sfadacof",
            "registered %s version %s namespace %s (argument %s)", r.name.c_str(), r.version.c_str(),
            r.creatorNamespace.c_str(), r.argNamespace.c_str());
    }
    // A second dlopen of the same library (polygraphy loading it twice) is a reference count: nothing more happens.
    void* again = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    CHECK(gRegistry.registrations.size() == expected, "second dlopen registered again");
    std::printf("register library: %zu registration(s), %d registry lookup(s)%s\n", gRegistry.registrations.size(),
        gRegistryLookups, preregister != nullptr ? " (creator already registered)" : "");
    if (again != nullptr)
        dlclose(again);
    // Not dlclose'd: the registry keeps a pointer to its creator, as TensorRT's would.
}

// The plugin was built with the other major's headers. IPluginCreatorV3One / IPluginV3 have the same layout in
// 10.x and 11.x (only the logger interfaces changed), so the creator can be driven; every message the plugin
// logs must go to stderr, never to this harness's ILogger.
void crossMajorChecks(IPluginCreatorV3One* creator, HarnessLogger& logger)
{
    CHECK(std::strcmp(creator->getPluginName(), "AdaCoFSynthesis") == 0, "name %s", creator->getPluginName());
    logger.verbose = false;
    int32_t const four = 4, one = 1, five = 5;
    IPluginV3* bad = create(creator, &four, &one, TensorRTPhase::kBUILD); // logs "invalid kernel_size"
    CHECK(bad == nullptr, "K=4 d=1 accepted");
    delete bad;
    IPluginV3* good = create(creator, &five, &one, TensorRTPhase::kBUILD);
    CHECK(good != nullptr, "K=5 d=1 refused");
    if (good != nullptr)
    {
        auto* build = static_cast<IPluginV3OneBuild*>(good->getCapabilityInterface(PluginCapabilityType::kBUILD));
        CHECK(build != nullptr && build->getNbOutputs() == 1, "build capability");
        DataType outType = DataType::kINT8;
        std::vector<DataType> types(9, DataType::kINT32); // logs "frame0 must be float32 or float16"
        CHECK(build && build->getOutputDataTypes(&outType, 1, types.data(), 9) != 0, "int32 frames accepted");
        delete good;
    }
    CHECK(logger.errors == 0, "%d messages reached the ILogger of another TensorRT major", logger.errors);
}

} // namespace

int main(int argc, char** argv)
{
    char const* pluginPath = nullptr;
    char const* registerPath = nullptr;
    bool preregistered = false;
    for (int i = 1; i < argc; ++i)
    {
        if (std::strcmp(argv[i], "--runtime-major") == 0 && i + 1 < argc)
            gRuntimeMajor = std::atoi(argv[++i]);
        else if (std::strcmp(argv[i], "--register-lib") == 0 && i + 1 < argc)
            registerPath = argv[++i];
        else if (std::strcmp(argv[i], "--preregistered") == 0)
            preregistered = true;
        else if (argv[i][0] != '-' && pluginPath == nullptr)
            pluginPath = argv[i];
        else
            pluginPath = nullptr, argc = 0;
    }
    if (pluginPath == nullptr || (preregistered && registerPath == nullptr))
    {
        std::printf("usage: %s [--runtime-major N] [--register-lib PATH [--preregistered]] "
                    "path/to/libsfadacof_trt_plugin.so\n",
            argv[0]);
        return 2;
    }
    std::printf("sfadacof plugin harness, TensorRT headers %d.%d.%d, emulated runtime major %d\n", NV_TENSORRT_MAJOR,
        NV_TENSORRT_MINOR, NV_TENSORRT_PATCH, gRuntimeMajor);
    // RTLD_NOW: every symbol the library needs must resolve without libnvinfer.
    void* lib = dlopen(pluginPath, RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr)
    {
        std::printf("FAIL dlopen: %s\n", dlerror());
        return 1;
    }
    // Loading the plugin proper has no side effect on the registry (TensorRT's loadLibrary registers its creators).
    CHECK(gRegistryLookups == 0 && gRegistry.calls == 0, "dlopen of the plugin touched the registry");
    using GetCreators = IPluginCreatorInterface* const* (*) (int32_t&);
    using SetLoggerFinder = void (*)(ILoggerFinder*);
    using HeaderVersion = int32_t (*)();
    auto getCreators = reinterpret_cast<GetCreators>(dlsym(lib, "getCreators"));
    auto setLoggerFinder = reinterpret_cast<SetLoggerFinder>(dlsym(lib, "setLoggerFinder"));
    auto headerVersion = reinterpret_cast<HeaderVersion>(dlsym(lib, "sfadacof_trt_plugin_tensorrt_version"));
    CHECK(getCreators != nullptr, "getCreators not exported");
    CHECK(setLoggerFinder != nullptr, "setLoggerFinder not exported");
    CHECK(headerVersion != nullptr, "sfadacof_trt_plugin_tensorrt_version not exported");
    if (!getCreators || !setLoggerFinder || !headerVersion)
        return 1;
    int32_t const pluginMajor = headerVersion() / 10000;
    // The plugin may call our ILoggerFinder only when the runtime it sees has its headers' major.
    bool const sameMajor = pluginMajor == gRuntimeMajor;
    // The harness's own interfaces (creator, plugin, descriptors) are of its headers' major.
    bool const harnessMajor = pluginMajor == NV_TENSORRT_MAJOR;
    std::printf("plugin built with TensorRT %d.%d.%d headers: logging expected through %s\n", pluginMajor,
        headerVersion() / 100 % 100, headerVersion() % 100,
        sameMajor ? "the ILoggerFinder" : "stderr (the runtime's major differs)");
    HarnessLogger logger;
    HarnessLoggerFinder finder(&logger);
    setLoggerFinder(&finder);
    // Whether a provoked error reached our logger, as it must exactly when the majors agree.
    auto const loggedAsExpected = [&](int before) { return sameMajor ? logger.errors > before : logger.errors == before; };

    int32_t n = -1;
    IPluginCreatorInterface* const* creators = getCreators(n);
    CHECK(n == 1 && creators != nullptr && creators[0] != nullptr, "getCreators gave %d creators", n);
    if (n != 1 || !creators || !creators[0])
        return 1;
    if (registerPath != nullptr)
    {
        checkStaticRegistration(registerPath, pluginMajor, preregistered ? creators[0] : nullptr);
    }
    if (!harnessMajor)
    {
        // Cross-major: drive the creator and plugin as far as both majors' interfaces agree (IPluginV3 is
        // unchanged), provoking logged errors, which must not reach our ILogger.
        crossMajorChecks(static_cast<IPluginCreatorV3One*>(creators[0]), logger);
        std::printf("%d checks, %d failures\n", gChecks, gFailures);
        return gFailures == 0 ? 0 : 1;
    }
    CHECK(std::strcmp(creators[0]->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") == 0, "creator kind %s",
        creators[0]->getInterfaceInfo().kind);
    auto* creator = static_cast<IPluginCreatorV3One*>(creators[0]);
    CHECK(std::strcmp(creator->getPluginName(), "AdaCoFSynthesis") == 0, "name %s", creator->getPluginName());
    CHECK(std::strcmp(creator->getPluginVersion(), "1") == 0, "version %s", creator->getPluginVersion());
    CHECK(std::strcmp(creator->getPluginNamespace(), "sfadacof") == 0, "namespace %s", creator->getPluginNamespace());
    PluginFieldCollection const* names = creator->getFieldNames();
    CHECK(names && names->nbFields == 3, "field names");
    CHECK(std::strcmp(names->fields[0].name, "kernel_size") == 0 && names->fields[0].type == PluginFieldType::kINT32,
        "field 0");
    CHECK(std::strcmp(names->fields[1].name, "dilation") == 0 && names->fields[1].type == PluginFieldType::kINT32,
        "field 1");
    CHECK(std::strcmp(names->fields[2].name, "fp16_offsets") == 0 && names->fields[2].type == PluginFieldType::kINT32,
        "field 2");

    // Invalid fields are refused with a logged reason.
    logger.verbose = false;
    int32_t const four = 4, one = 1, zero = 0, three = 3, two = 2, five = 5, big = 65;
    for (auto kd : {std::make_pair(&four, &one), std::make_pair(&zero, &one), std::make_pair(&three, &zero),
             std::make_pair(&big, &one)})
    {
        int const before = logger.errors;
        IPluginV3* bad = create(creator, kd.first, kd.second, TensorRTPhase::kBUILD);
        CHECK(bad == nullptr, "K=%d d=%d accepted", *kd.first, *kd.second);
        CHECK(loggedAsExpected(before), "K=%d d=%d: %d errors reached the ILogger", *kd.first, *kd.second,
            logger.errors - before);
        delete bad;
    }
    {
        // fp16_offsets is a switch: 0 or 1
        int const before = logger.errors;
        IPluginV3* bad = create(creator, &five, &one, TensorRTPhase::kBUILD, &two);
        CHECK(bad == nullptr, "fp16_offsets=2 accepted");
        CHECK(loggedAsExpected(before), "fp16_offsets=2: %d errors reached the ILogger", logger.errors - before);
        delete bad;
    }
    {
        float const fk = 5.f;
        PluginField f("kernel_size", &fk, PluginFieldType::kFLOAT32, 1);
        PluginFieldCollection fc{1, &f};
        IPluginV3* bad = creator->createPlugin("x", &fc, TensorRTPhase::kBUILD);
        CHECK(bad == nullptr, "float kernel_size accepted");
        delete bad;
    }
    logger.verbose = true;
    {
        // Absent fields take the spec's defaults (K = 5, d = 1); an int64 field is accepted too.
        IPluginV3* p = create(creator, nullptr, nullptr, TensorRTPhase::kBUILD);
        CHECK(p != nullptr, "defaults refused");
        auto* rt = p ? static_cast<IPluginV3OneRuntime*>(p->getCapabilityInterface(PluginCapabilityType::kRUNTIME)) : nullptr;
        CHECK(rt && fieldInt(rt->getFieldsToSerialize(), "kernel_size") == 5
                && fieldInt(rt->getFieldsToSerialize(), "dilation") == 1
                && fieldInt(rt->getFieldsToSerialize(), "fp16_offsets") == 0, "defaults");
        delete p;
        int64_t const k64 = 3;
        PluginField f("kernel_size", &k64, PluginFieldType::kINT64, 1);
        PluginFieldCollection fc{1, &f};
        p = creator->createPlugin("x", &fc, TensorRTPhase::kBUILD);
        rt = p ? static_cast<IPluginV3OneRuntime*>(p->getCapabilityInterface(PluginCapabilityType::kRUNTIME)) : nullptr;
        CHECK(rt && fieldInt(rt->getFieldsToSerialize(), "kernel_size") == 3, "int64 field");
        delete p;
    }

    for (auto kd : {std::make_pair(five, one), std::make_pair(three, two)})
    {
        int32_t const K = kd.first, D = kd.second;
        std::printf("K=%d dilation=%d\n", K, D);
        IPluginV3* plugin = create(creator, &K, &D, TensorRTPhase::kBUILD);
        CHECK(plugin != nullptr, "createPlugin(kBUILD)");
        if (!plugin)
            return 1;
        CHECK(std::strcmp(plugin->getInterfaceInfo().kind, "PLUGIN") == 0, "plugin kind");
        auto* core = static_cast<IPluginV3OneCore*>(plugin->getCapabilityInterface(PluginCapabilityType::kCORE));
        auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
        auto* runtime
            = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
        CHECK(core && build && runtime, "capability interfaces");
        CHECK(std::strcmp(core->getInterfaceInfo().kind, "PLUGIN_V3ONE_CORE") == 0, "core kind");
        CHECK(std::strcmp(build->getInterfaceInfo().kind, "PLUGIN_V3ONE_BUILD") == 0, "build kind");
        CHECK(std::strcmp(runtime->getInterfaceInfo().kind, "PLUGIN_V3ONE_RUNTIME") == 0, "runtime kind");
        CHECK(std::strcmp(core->getPluginName(), "AdaCoFSynthesis") == 0 && std::strcmp(core->getPluginVersion(), "1") == 0
                && std::strcmp(core->getPluginNamespace(), "sfadacof") == 0, "core identity");

        CHECK(build->getNbOutputs() == 1, "nb outputs");
        for (DataType t : {DataType::kFLOAT, DataType::kHALF})
        {
            std::vector<DataType> types(9, t);
            DataType outType = DataType::kINT8;
            CHECK(build->getOutputDataTypes(&outType, 1, types.data(), 9) == 0 && outType == t, "output type");
        }

        // getOutputShapes with dynamic B, H, W: the output is frame0's expressions.
        ExprStore store;
        Builder exprBuilder(&store);
        IDimensionExpr const* B = store.make(false, -1, "B");
        IDimensionExpr const* H = store.make(false, -1, "H");
        IDimensionExpr const* W = store.make(false, -1, "W");
        std::vector<DimsExprs> ins(9);
        for (int i = 0; i < 9; ++i)
        {
            ins[i].nbDims = 4;
            ins[i].d[0] = B;
            ins[i].d[1] = exprBuilder.constant(i < 2 ? 3 : (i == 8 ? 1 : K * K));
            ins[i].d[2] = H;
            ins[i].d[3] = W;
        }
        DimsExprs outExpr{};
        CHECK(build->getOutputShapes(ins.data(), 9, nullptr, 0, &outExpr, 1, exprBuilder) == 0, "getOutputShapes");
        CHECK(outExpr.nbDims == 4 && outExpr.d[0] == B && outExpr.d[2] == H && outExpr.d[3] == W
                && outExpr.d[1]->isConstant() && outExpr.d[1]->getConstantValue() == 3, "output shape expressions");
        logger.verbose = false;
        CHECK(build->getOutputShapes(ins.data(), 8, nullptr, 0, &outExpr, 1, exprBuilder) != 0, "8 inputs accepted");
        logger.verbose = true;

        // supportsFormatCombination: exactly all-f32 and f16 with f32 offsets; all-f16 (f16 offsets) only with
        // fp16_offsets=1 on the node.
        std::string const allF32 = "f32,f32,f32,f32,f32,f32,f32,f32,f32,f32";
        std::string const f32Offsets = "f16,f16,f16,f32,f32,f16,f32,f32,f16,f16";
        std::string const allF16 = "f16,f16,f16,f16,f16,f16,f16,f16,f16,f16";
        std::vector<DynamicPluginTensorDesc> io(10);
        std::vector<Dims> dd = inputDims(-1, 3, -1, -1, K);
        dd.push_back(dims4(-1, 3, -1, -1));
        for (int i = 0; i < 10; ++i)
        {
            io[i].desc.dims = dd[i];
            io[i].min = dd[i];
            io[i].max = dd[i];
        }
        std::vector<std::string> accepted;
        enumerateFormats(build, io, 0, accepted, "");
        CHECK(accepted == std::vector<std::string>({allF32, f32Offsets}), "%zu format combinations accepted",
            accepted.size());
        for (auto const& a : accepted)
            std::printf("  accepted types (frame0,frame2,w1,a1,b1,w2,a2,b2,occ,out): %s\n", a.c_str());
        std::printf("  fp16 offsets: %s without fp16_offsets=1\n",
            std::find(accepted.begin(), accepted.end(), allF16) == accepted.end() ? "refused" : "ACCEPTED");
        {
            int32_t const on = 1;
            IPluginV3* opted = create(creator, &K, &D, TensorRTPhase::kBUILD, &on);
            auto* optedBuild = opted
                ? static_cast<IPluginV3OneBuild*>(opted->getCapabilityInterface(PluginCapabilityType::kBUILD))
                : nullptr;
            CHECK(optedBuild != nullptr, "createPlugin(fp16_offsets=1)");
            if (optedBuild)
            {
                std::vector<std::string> optedAccepted;
                enumerateFormats(optedBuild, io, 0, optedAccepted, "");
                CHECK(optedAccepted == std::vector<std::string>({allF32, f32Offsets, allF16}),
                    "fp16_offsets=1: %zu format combinations accepted", optedAccepted.size());
                std::printf("  fp16 offsets: %s with fp16_offsets=1\n",
                    std::find(optedAccepted.begin(), optedAccepted.end(), allF16) != optedAccepted.end() ? "accepted"
                                                                                                      : "REFUSED");
                CHECK(std::string(optedBuild->getTimingCacheID()).find("fp16_offsets=1") != std::string::npos,
                    "timing cache id of the opted-in node");
                auto* optedRt = static_cast<IPluginV3OneRuntime*>(
                    opted->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
                FieldCopy optedSerial(optedRt->getFieldsToSerialize());
                IPluginV3* optedRestored = creator->createPlugin("adacof_node", &optedSerial.fc, TensorRTPhase::kRUNTIME);
                auto* orb = optedRestored ? static_cast<IPluginV3OneBuild*>(
                                optedRestored->getCapabilityInterface(PluginCapabilityType::kBUILD))
                                          : nullptr;
                std::vector<std::string> restoredAccepted;
                if (orb)
                    enumerateFormats(orb, io, 0, restoredAccepted, "");
                CHECK(fieldInt(&optedSerial.fc, "fp16_offsets") == 1 && restoredAccepted.size() == 3,
                    "fp16_offsets=1 lost in the serialisation round trip");
                delete optedRestored;
            }
            delete opted;
        }

        // configurePlugin: dynamic dims pass; a wrong K*K channel count fails.
        for (int i = 0; i < 10; ++i)
        {
            io[i].desc.type = DataType::kFLOAT;
            io[i].desc.format = TensorFormat::kLINEAR;
        }
        CHECK(build->configurePlugin(io.data(), 9, io.data() + 9, 1) == 0, "configurePlugin");
        CHECK(build->getWorkspaceSize(io.data(), 9, io.data() + 9, 1) == 0, "workspace");
        io[5].desc.dims.d[1] = K * K + 1;
        logger.verbose = false;
        CHECK(build->configurePlugin(io.data(), 9, io.data() + 9, 1) != 0, "bad channel count accepted");
        logger.verbose = true;
        CHECK(build->getTimingCacheID() && std::string(build->getTimingCacheID()).find("kernel_size=" + std::to_string(K)) != std::string::npos,
            "timing cache id");

        // clone, serialise (deep copy of the fields), destroy, re-create for the runtime phase.
        IPluginV3* cloned = plugin->clone();
        CHECK(cloned && cloned != plugin, "clone");
        delete plugin;
        auto* clonedRuntime
            = static_cast<IPluginV3OneRuntime*>(cloned->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
        FieldCopy serial(clonedRuntime->getFieldsToSerialize());
        delete cloned;
        CHECK(fieldInt(&serial.fc, "kernel_size") == K && fieldInt(&serial.fc, "dilation") == D
                && fieldInt(&serial.fc, "fp16_offsets") == 0, "serialised fields");
        IPluginV3* restored = creator->createPlugin("adacof_node", &serial.fc, TensorRTPhase::kRUNTIME);
        CHECK(restored != nullptr, "createPlugin(kRUNTIME)");
        if (!restored)
            return 1;
        auto* rt = static_cast<IPluginV3OneRuntime*>(restored->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
        CHECK(fieldInt(rt->getFieldsToSerialize(), "kernel_size") == K
                && fieldInt(rt->getFieldsToSerialize(), "dilation") == D, "round trip");
        IPluginV3* attached = rt->attachToContext(nullptr);
        CHECK(attached && attached != restored, "attachToContext");
        auto* art = static_cast<IPluginV3OneRuntime*>(attached->getCapabilityInterface(PluginCapabilityType::kRUNTIME));

        // onShapeChange with concrete shapes; mismatches are refused.
        std::vector<Dims> concrete = inputDims(2, 3, 37, 45, K);
        std::vector<PluginTensorDesc> pin(9);
        for (int i = 0; i < 9; ++i)
            pin[i] = PluginTensorDesc{concrete[i], DataType::kFLOAT, TensorFormat::kLINEAR, -1.f};
        PluginTensorDesc pout{concrete[0], DataType::kFLOAT, TensorFormat::kLINEAR, -1.f};
        CHECK(art->onShapeChange(pin.data(), 9, &pout, 1) == 0, "onShapeChange");
        pin[8].dims.d[2] = 36;
        logger.verbose = false;
        CHECK(art->onShapeChange(pin.data(), 9, &pout, 1) != 0, "occlusion height mismatch accepted");
        logger.verbose = true;

        bool ran = runEnqueue(art, K, D, DataType::kFLOAT, DataType::kFLOAT, 1e-5);
        if (ran)
        {
            runEnqueue(art, K, D, DataType::kHALF, DataType::kHALF, 2e-3);
            runEnqueue(art, K, D, DataType::kHALF, DataType::kFLOAT, 2e-3);
        }
        else
        {
            std::printf("  enqueue: SKIPPED (no CUDA device)\n");
        }
        delete attached;
        delete restored;
    }
    CHECK(logger.unexpected == 0, "unexpected plugin errors logged, last: %s", logger.last.c_str());
    std::printf("%d checks, %d failures\n", gChecks, gFailures);
    dlclose(lib);
    return gFailures == 0 ? 0 : 1;
}
