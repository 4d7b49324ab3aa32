// TensorRT IPluginV3 of the fused AdaCoF synthesis op. Contract: plugins/README.md; kernels: adacof_kernels.cu.
#include "adacof_plugin.h"

#include "adacof_kernels.h"
#include "adacof_math.h"

#include <atomic>
#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <new>

#if !defined(_WIN32)
#include <dlfcn.h>
#endif
#if defined(__linux__)
#include <link.h>
#endif

using namespace nvinfer1;

namespace sfadacof
{
namespace
{

// ---------------------------------------------------------------------------------------------- TensorRT runtime
// The plugin may be loaded by a TensorRT runtime of another major than its headers (ILogger and ILoggerFinder
// derive from IVersionedInterface from 11.x on, not in 10.x: calling them through the other major's vtable
// crashes). The runtime's functions are looked up at run time, never linked: first in the global scope
// (dlsym(RTLD_DEFAULT): an executable or library loaded RTLD_GLOBAL), then among the loaded objects named
// libnvinfer*.so.N, which Python's `import tensorrt` loads RTLD_LOCAL, out of reach of RTLD_DEFAULT.
using InferVersionFn = int32_t (*)();
using GetPluginRegistryFn = IPluginRegistry* (*) ();

struct TrtRuntime
{
    int32_t major = -1;                            // -1: no runtime found, or runtimes of different majors
    GetPluginRegistryFn getPluginRegistry = nullptr; // of a runtime of that major, when one exports it
};

#if !defined(_WIN32)
int32_t runtimeMajorOf(void* handle) noexcept
{
    if (auto f = reinterpret_cast<InferVersionFn>(dlsym(handle, "getInferLibMajorVersion")))
    {
        return f();
    }
    if (auto f = reinterpret_cast<InferVersionFn>(dlsym(handle, "getInferLibVersion")))
    {
        return f() / 10000; // (MAJOR * 100 + MINOR) * 100 + PATCH in every 10.x and 11.x
    }
    return -1;
}
#endif

#if defined(__linux__)
constexpr int kMaxRuntimeObjects = 8;
struct LoadedRuntimes
{
    char paths[kMaxRuntimeObjects][4096];
    int count = 0;
};

int collectRuntimes(dl_phdr_info* info, size_t /* size */, void* data) noexcept
{
    auto* found = static_cast<LoadedRuntimes*>(data);
    char const* path = info->dlpi_name;
    if (path == nullptr || path[0] == '\0' || found->count == kMaxRuntimeObjects)
    {
        return 0;
    }
    char const* slash = std::strrchr(path, '/');
    char const* base = slash != nullptr ? slash + 1 : path;
    // The full, lean and dispatch runtimes; not libnvinfer_plugin, libnvinfer_builder_resource, ...
    for (char const* prefix : {"libnvinfer.so.", "libnvinfer_lean.so.", "libnvinfer_dispatch.so."})
    {
        if (std::strncmp(base, prefix, std::strlen(prefix)) == 0 && std::strlen(path) < sizeof(found->paths[0]))
        {
            std::strcpy(found->paths[found->count++], path);
            break;
        }
    }
    return 0;
}
#endif

// Agreement of every TensorRT runtime visible in this process; unknown (-1) if none or if they disagree.
TrtRuntime findTrtRuntime() noexcept
{
    TrtRuntime rt;
#if !defined(_WIN32)
    bool conflict = false;
    auto const merge = [&](int32_t major, GetPluginRegistryFn registry) {
        if (major < 0)
        {
            return;
        }
        if (rt.major >= 0 && rt.major != major)
        {
            conflict = true;
        }
        rt.major = major;
        if (rt.getPluginRegistry == nullptr)
        {
            rt.getPluginRegistry = registry;
        }
    };
    merge(runtimeMajorOf(RTLD_DEFAULT), reinterpret_cast<GetPluginRegistryFn>(dlsym(RTLD_DEFAULT, "getPluginRegistry")));
#if defined(__linux__)
    LoadedRuntimes found;
    dl_iterate_phdr(collectRuntimes, &found);
    for (int i = 0; i < found.count; ++i)
    {
        // RTLD_NOLOAD: only a handle to what is already loaded; the reference is dropped again below, the runtime
        // stays loaded by whoever loaded it.
        void* handle = dlopen(found.paths[i], RTLD_LAZY | RTLD_NOLOAD);
        if (handle != nullptr)
        {
            merge(runtimeMajorOf(handle), reinterpret_cast<GetPluginRegistryFn>(dlsym(handle, "getPluginRegistry")));
            dlclose(handle);
        }
    }
#endif
    if (conflict)
    {
        rt = TrtRuntime{};
    }
#endif
    return rt;
}

// Set by setLoggerFinder only when the runtime that calls it has the headers' major; else messages go to stderr.
std::atomic<ILoggerFinder*> gLoggerFinder{nullptr};

void log(ILogger::Severity severity, char const* msg) noexcept
{
    ILoggerFinder* finder = gLoggerFinder.load();
    ILogger* logger = finder != nullptr ? finder->findLogger() : nullptr;
    if (logger != nullptr)
    {
        logger->log(severity, msg);
    }
    else if (severity <= ILogger::Severity::kWARNING)
    {
        std::fprintf(stderr, "[sfadacof plugin] %s\n", msg);
    }
}

void logError(std::string const& msg) noexcept
{
    try
    {
        log(ILogger::Severity::kERROR, (std::string(kPLUGIN_NAMESPACE) + "::" + kPLUGIN_NAME + ": " + msg).c_str());
    }
    catch (...)
    {
        log(ILogger::Severity::kERROR, "sfadacof::AdaCoFSynthesis: error (out of memory while formatting it)");
    }
}

bool isFloatType(DataType t) noexcept
{
    return t == DataType::kFLOAT || t == DataType::kHALF;
}

// Expected channel count of input `index` (-1: the frame's channel count C).
int64_t expectedChannels(int32_t index, int32_t kernelSize) noexcept
{
    switch (index)
    {
    case kFRAME0:
    case kFRAME2: return -1;
    case kOCCLUSION: return 1;
    default: return static_cast<int64_t>(kernelSize) * kernelSize;
    }
}

// Checks B, C, H, W agreement of the nine inputs where known (-1 = unknown at build time).
bool checkDims(Dims const* const* dims, int32_t kernelSize, std::string& why) noexcept
{
    try
    {
        for (int32_t i = 0; i < kNB_INPUTS; ++i)
        {
            if (dims[i]->nbDims != 4)
            {
                why = "input " + std::to_string(i) + " has rank " + std::to_string(dims[i]->nbDims) + ", expected 4 (NCHW)";
                return false;
            }
        }
        Dims const& f = *dims[kFRAME0];
        for (int32_t i = 1; i < kNB_INPUTS; ++i)
        {
            Dims const& d = *dims[i];
            int64_t const c = expectedChannels(i, kernelSize) < 0 ? f.d[1] : expectedChannels(i, kernelSize);
            int64_t const want[4] = {f.d[0], c, f.d[2], f.d[3]};
            for (int32_t a = 0; a < 4; ++a)
            {
                if (d.d[a] >= 0 && want[a] >= 0 && d.d[a] != want[a])
                {
                    why = "input " + std::to_string(i) + " has size " + std::to_string(d.d[a]) + " on axis "
                        + std::to_string(a) + ", expected " + std::to_string(want[a]) + " (kernel_size "
                        + std::to_string(kernelSize) + ", frame0 (B, C, H, W))";
                    return false;
                }
            }
        }
        return true;
    }
    catch (...)
    {
        why = "out of memory";
        return false;
    }
}

} // namespace

// ------------------------------------------------------------------------------------------------------ plugin

AdaCoFSynthesisPlugin::AdaCoFSynthesisPlugin(int32_t kernel_size, int32_t dilation, int32_t fp16_offsets)
    : mKernelSize(kernel_size)
    , mDilation(dilation)
    , mFp16Offsets(fp16_offsets != 0 ? 1 : 0)
{
    mDescription = std::string(kPLUGIN_NAME) + "(kernel_size=" + std::to_string(mKernelSize)
        + ",dilation=" + std::to_string(mDilation) + ",fp16_offsets=" + std::to_string(mFp16Offsets) + ")";
    mSerialFields.emplace_back(kFIELD_KERNEL_SIZE, &mKernelSize, PluginFieldType::kINT32, 1);
    mSerialFields.emplace_back(kFIELD_DILATION, &mDilation, PluginFieldType::kINT32, 1);
    mSerialFields.emplace_back(kFIELD_FP16_OFFSETS, &mFp16Offsets, PluginFieldType::kINT32, 1);
    mSerialFieldCollection.nbFields = static_cast<int32_t>(mSerialFields.size());
    mSerialFieldCollection.fields = mSerialFields.data();
}

IPluginCapability* AdaCoFSynthesisPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
    case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

IPluginV3* AdaCoFSynthesisPlugin::clone() noexcept
{
    try
    {
        return new AdaCoFSynthesisPlugin(mKernelSize, mDilation, mFp16Offsets);
    }
    catch (std::exception const& e)
    {
        logError(std::string("clone failed: ") + e.what());
    }
    return nullptr;
}

char const* AdaCoFSynthesisPlugin::getPluginName() const noexcept
{
    return kPLUGIN_NAME;
}

char const* AdaCoFSynthesisPlugin::getPluginVersion() const noexcept
{
    return kPLUGIN_VERSION;
}

char const* AdaCoFSynthesisPlugin::getPluginNamespace() const noexcept
{
    return kPLUGIN_NAMESPACE;
}

int32_t AdaCoFSynthesisPlugin::getNbOutputs() const noexcept
{
    return kNB_OUTPUTS;
}

int32_t AdaCoFSynthesisPlugin::configurePlugin(DynamicPluginTensorDesc const* in, int32_t nbInputs,
    DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    if (in == nullptr || out == nullptr || nbInputs != kNB_INPUTS || nbOutputs != kNB_OUTPUTS)
    {
        logError("configurePlugin: expected 9 inputs and 1 output");
        return -1;
    }
    Dims const* dims[kNB_INPUTS];
    for (int32_t i = 0; i < kNB_INPUTS; ++i)
    {
        dims[i] = &in[i].desc.dims;
    }
    std::string why;
    if (!checkDims(dims, mKernelSize, why))
    {
        logError("configurePlugin: " + why);
        return -1;
    }
    return 0;
}

int32_t AdaCoFSynthesisPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (outputTypes == nullptr || inputTypes == nullptr || nbOutputs != kNB_OUTPUTS || nbInputs != kNB_INPUTS)
    {
        logError("getOutputDataTypes: expected 9 inputs and 1 output");
        return -1;
    }
    if (!isFloatType(inputTypes[kFRAME0]))
    {
        logError("getOutputDataTypes: frame0 must be float32 or float16");
        return -1;
    }
    outputTypes[0] = inputTypes[kFRAME0];
    return 0;
}

int32_t AdaCoFSynthesisPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs,
    DimsExprs const* /* shapeInputs */, int32_t nbShapeInputs, DimsExprs* outputs, int32_t nbOutputs,
    IExprBuilder& /* exprBuilder */) noexcept
{
    if (inputs == nullptr || outputs == nullptr || nbInputs != kNB_INPUTS || nbOutputs != kNB_OUTPUTS
        || nbShapeInputs != 0)
    {
        logError("getOutputShapes: expected 9 tensor inputs, no shape inputs and 1 output");
        return -1;
    }
    for (int32_t i = 0; i < kNB_INPUTS; ++i)
    {
        if (inputs[i].nbDims != 4)
        {
            logError("getOutputShapes: every input must be 4-D (NCHW)");
            return -1;
        }
    }
    // frame1 has frame0's (B, C, H, W), dynamic or not: the same expressions.
    outputs[0] = inputs[kFRAME0];
    return 0;
}

bool AdaCoFSynthesisPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (inOut == nullptr || nbInputs != kNB_INPUTS || nbOutputs != kNB_OUTPUTS || pos < 0
        || pos >= kNB_INPUTS + kNB_OUTPUTS)
    {
        return false;
    }
    PluginTensorDesc const& d = inOut[pos].desc;
    if (d.format != TensorFormat::kLINEAR)
    {
        return false;
    }
    // Accepted: all float32; float16 with float32 alpha1/beta1/alpha2/beta2 (offsets beyond a few pixels lose their
    // fractional part in float16, and the offsets are what the bilinear weights come from); all float16 only when
    // the node opts in (kFIELD_FP16_OFFSETS), so that no weakly typed build can pick it by timing.
    switch (pos)
    {
    case kFRAME0: return isFloatType(d.type);
    case kALPHA1: return d.type == DataType::kFLOAT || (mFp16Offsets != 0 && d.type == inOut[kFRAME0].desc.type);
    case kBETA1:
    case kALPHA2:
    case kBETA2: return d.type == inOut[kALPHA1].desc.type;
    default: return d.type == inOut[kFRAME0].desc.type; // frame2, weights, occlusion, output
    }
}

size_t AdaCoFSynthesisPlugin::getWorkspaceSize(DynamicPluginTensorDesc const* /* inputs */, int32_t /* nbInputs */,
    DynamicPluginTensorDesc const* /* outputs */, int32_t /* nbOutputs */) const noexcept
{
    return 0;
}

char const* AdaCoFSynthesisPlugin::getTimingCacheID() noexcept
{
    return mDescription.c_str();
}

char const* AdaCoFSynthesisPlugin::getMetadataString() noexcept
{
    return mDescription.c_str();
}

int32_t AdaCoFSynthesisPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    if (in == nullptr || out == nullptr || nbInputs != kNB_INPUTS || nbOutputs != kNB_OUTPUTS)
    {
        logError("onShapeChange: expected 9 inputs and 1 output");
        return -1;
    }
    Dims const* dims[kNB_INPUTS];
    for (int32_t i = 0; i < kNB_INPUTS; ++i)
    {
        dims[i] = &in[i].dims;
    }
    std::string why;
    if (!checkDims(dims, mKernelSize, why))
    {
        logError("onShapeChange: " + why);
        return -1;
    }
    for (int32_t a = 0; a < 4; ++a)
    {
        if (in[kFRAME0].dims.d[a] < 0 || in[kFRAME0].dims.d[a] > std::numeric_limits<int32_t>::max()
            || out[0].dims.nbDims != 4 || out[0].dims.d[a] != in[kFRAME0].dims.d[a])
        {
            logError("onShapeChange: output must have frame0's shape, every size within int32");
            return -1;
        }
    }
    return 0;
}

int32_t AdaCoFSynthesisPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc,
    void const* const* inputs, void* const* outputs, void* /* workspace */, cudaStream_t stream) noexcept
{
    if (inputDesc == nullptr || outputDesc == nullptr || inputs == nullptr || outputs == nullptr)
    {
        logError("enqueue: null descriptors or pointers");
        return -1;
    }
    Dims const& d = inputDesc[kFRAME0].dims;
    auto const toType = [](DataType t) {
        return t == DataType::kHALF ? TensorType::kFloat16 : TensorType::kFloat32;
    };
    SynthesisLaunch const p{inputs[kFRAME0], inputs[kFRAME2], inputs[kWEIGHT1], inputs[kALPHA1], inputs[kBETA1],
        inputs[kWEIGHT2], inputs[kALPHA2], inputs[kBETA2], inputs[kOCCLUSION], outputs[0],
        toType(inputDesc[kFRAME0].type), toType(inputDesc[kALPHA1].type), static_cast<int32_t>(d.d[0]),
        static_cast<int32_t>(d.d[1]), static_cast<int32_t>(d.d[2]), static_cast<int32_t>(d.d[3]), mKernelSize,
        mDilation};
    int32_t const status = launch_synthesis(p, stream);
    if (status != 0)
    {
        logError(std::string("enqueue: ") + sfadacof_cuda_status_string(status));
        return status;
    }
    return 0;
}

IPluginV3* AdaCoFSynthesisPlugin::attachToContext(IPluginResourceContext* /* context */) noexcept
{
    return clone();
}

PluginFieldCollection const* AdaCoFSynthesisPlugin::getFieldsToSerialize() noexcept
{
    return &mSerialFieldCollection;
}

// ------------------------------------------------------------------------------------------------------ creator

AdaCoFSynthesisCreator::AdaCoFSynthesisCreator()
{
    mFields.emplace_back(kFIELD_KERNEL_SIZE, nullptr, PluginFieldType::kINT32, 1);
    mFields.emplace_back(kFIELD_DILATION, nullptr, PluginFieldType::kINT32, 1);
    mFields.emplace_back(kFIELD_FP16_OFFSETS, nullptr, PluginFieldType::kINT32, 1);
    mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
    mFieldCollection.fields = mFields.data();
}

namespace
{
// One integer from a field of any integer type (the ONNX parser passes kINT32; users may pass kINT64 etc.).
bool readIntField(PluginField const& f, int64_t& value) noexcept
{
    if (f.data == nullptr || f.length != 1)
    {
        return false;
    }
    switch (f.type)
    {
    case PluginFieldType::kINT8: value = *static_cast<int8_t const*>(f.data); return true;
    case PluginFieldType::kINT16: value = *static_cast<int16_t const*>(f.data); return true;
    case PluginFieldType::kINT32: value = *static_cast<int32_t const*>(f.data); return true;
    case PluginFieldType::kINT64: value = *static_cast<int64_t const*>(f.data); return true;
    default: return false;
    }
}
} // namespace

IPluginV3* AdaCoFSynthesisCreator::createPlugin(
    char const* name, PluginFieldCollection const* fc, TensorRTPhase /* phase */) noexcept
{
    try
    {
        int64_t kernelSize = kDEFAULT_KERNEL_SIZE;
        int64_t dilation = kDEFAULT_DILATION;
        int64_t fp16Offsets = 0;
        if (fc != nullptr && fc->nbFields > 0 && fc->fields == nullptr)
        {
            logError("createPlugin: null field array");
            return nullptr;
        }
        for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i)
        {
            PluginField const& f = fc->fields[i];
            if (f.name == nullptr)
            {
                continue;
            }
            int64_t* target = std::strcmp(f.name, kFIELD_KERNEL_SIZE) == 0 ? &kernelSize
                : std::strcmp(f.name, kFIELD_DILATION) == 0                ? &dilation
                : std::strcmp(f.name, kFIELD_FP16_OFFSETS) == 0            ? &fp16Offsets
                                                                           : nullptr;
            if (target == nullptr)
            {
                continue; // not ours (e.g. a tool adding its own attributes)
            }
            if (!readIntField(f, *target))
            {
                logError(std::string("createPlugin: field ") + f.name + " must be one integer (kINT32)");
                return nullptr;
            }
        }
        if (kernelSize < 1 || kernelSize > kMaxKernelSize || dilation < 1 || dilation > kMaxDilation
            || !adacof_params_valid(static_cast<int>(kernelSize), static_cast<int>(dilation)))
        {
            logError("createPlugin" + std::string(name != nullptr ? std::string(" (") + name + ")" : "")
                + ": invalid kernel_size=" + std::to_string(kernelSize) + ", dilation=" + std::to_string(dilation)
                + " (need 1 <= kernel_size <= " + std::to_string(kMaxKernelSize) + ", 1 <= dilation <= "
                + std::to_string(kMaxDilation) + ", (kernel_size - 1) * dilation even)");
            return nullptr;
        }
        if (fp16Offsets != 0 && fp16Offsets != 1)
        {
            logError("createPlugin" + std::string(name != nullptr ? std::string(" (") + name + ")" : "")
                + ": invalid " + kFIELD_FP16_OFFSETS + "=" + std::to_string(fp16Offsets) + " (need 0 or 1)");
            return nullptr;
        }
        return new AdaCoFSynthesisPlugin(
            static_cast<int32_t>(kernelSize), static_cast<int32_t>(dilation), static_cast<int32_t>(fp16Offsets));
    }
    catch (std::exception const& e)
    {
        logError(std::string("createPlugin failed: ") + e.what());
    }
    return nullptr;
}

PluginFieldCollection const* AdaCoFSynthesisCreator::getFieldNames() noexcept
{
    return &mFieldCollection;
}

char const* AdaCoFSynthesisCreator::getPluginName() const noexcept
{
    return kPLUGIN_NAME;
}

char const* AdaCoFSynthesisCreator::getPluginVersion() const noexcept
{
    return kPLUGIN_VERSION;
}

char const* AdaCoFSynthesisCreator::getPluginNamespace() const noexcept
{
    return kPLUGIN_NAMESPACE;
}

} // namespace sfadacof

// ---------------------------------------------------------------------------------------------- library entry points

namespace sfadacof
{
namespace
{
IPluginCreatorInterface* const* creatorList(int32_t& nbCreators) noexcept
{
    static AdaCoFSynthesisCreator creator;
    static IPluginCreatorInterface* const creators[] = {&creator};
    nbCreators = static_cast<int32_t>(sizeof(creators) / sizeof(creators[0]));
    return creators;
}

#if defined(SFADACOF_STATIC_REGISTRATION)
// libsfadacof_trt_register: register the creator into the TensorRT runtime already loaded in this process when
// the library is dlopen'ed (polygraphy --plugins and ctypes.CDLL do nothing else). Only a runtime of the headers'
// major is called; without one nothing happens beyond a line on stderr.
struct StaticRegistration
{
    StaticRegistration() noexcept
    {
        TrtRuntime const rt = findTrtRuntime();
        if (rt.major != NV_TENSORRT_MAJOR || rt.getPluginRegistry == nullptr)
        {
            std::fprintf(stderr, "[sfadacof plugin] %s::%s not registered: %s\n", kPLUGIN_NAMESPACE, kPLUGIN_NAME,
                rt.major < 0 ? "no TensorRT runtime (libnvinfer) of a single version is loaded in this process; "
                               "import tensorrt before loading this library"
                    : rt.major != NV_TENSORRT_MAJOR
                    ? "the TensorRT runtime in this process has another major version than this library's headers; "
                      "rebuild it with the runtime's headers (python -m plugins.build --tensorrt-include DIR)"
                    : "the TensorRT runtime in this process exports no getPluginRegistry");
            return;
        }
        IPluginRegistry* registry = rt.getPluginRegistry();
        if (registry == nullptr)
        {
            return;
        }
        int32_t n = 0;
        IPluginCreatorInterface* const* creators = creatorList(n);
        for (int32_t i = 0; i < n; ++i)
        {
            // Already there (this library loaded twice, or the plugin proper loaded through loadLibrary): keep it;
            // registering a second creator of the same name/version/namespace would fail.
            if (registry->getCreator(kPLUGIN_NAME, kPLUGIN_VERSION, kPLUGIN_NAMESPACE) != nullptr)
            {
                continue;
            }
            if (!registry->registerCreator(*creators[i], kPLUGIN_NAMESPACE))
            {
                std::fprintf(stderr, "[sfadacof plugin] registering %s::%s version %s failed\n", kPLUGIN_NAMESPACE,
                    kPLUGIN_NAME, kPLUGIN_VERSION);
            }
        }
    }
};
StaticRegistration const gStaticRegistration;
#endif
} // namespace
} // namespace sfadacof

extern "C" SFADACOF_PLUGIN_API int32_t sfadacof_trt_plugin_tensorrt_version()
{
    return (NV_TENSORRT_MAJOR * 100 + NV_TENSORRT_MINOR) * 100 + NV_TENSORRT_PATCH;
}

#if !defined(SFADACOF_STATIC_REGISTRATION)
// Only the plugin proper has TensorRT's loading entry points: loadLibrary on the register variant would register
// its creator twice (once statically), so TensorRT refuses it with "getCreators not found" instead.
extern "C" SFADACOF_PLUGIN_API void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    // Called by the runtime that loads the library: keep the finder only if that runtime has our headers' major.
    int32_t const major = sfadacof::findTrtRuntime().major;
    if (finder != nullptr && major != NV_TENSORRT_MAJOR)
    {
        char runtime[32] = "of an unknown version";
        if (major >= 0)
        {
            std::snprintf(runtime, sizeof(runtime), "%d.x", major);
        }
        std::fprintf(stderr,
            "[sfadacof plugin] this plugin was built with TensorRT %d.%d headers, the TensorRT runtime in this process "
            "is %s: plugin messages go to stderr. Rebuild the plugin with the runtime's headers "
            "(python -m plugins.build --tensorrt-include DIR).\n",
            NV_TENSORRT_MAJOR, NV_TENSORRT_MINOR, runtime);
        finder = nullptr;
    }
    sfadacof::gLoggerFinder.store(finder);
}

extern "C" SFADACOF_PLUGIN_API nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    return sfadacof::creatorList(nbCreators);
}
#endif
