// TensorRT plugin of the fused AdaCoF synthesis op: IPluginV3 (IPluginV3OneCore / Build / Runtime) and its
// IPluginCreatorV3One, for TensorRT 10.x and 11.x. The library (libsfadacof_trt_plugin) exports getCreators() and
// setLoggerFinder() for IPluginRegistry::loadLibrary and trtexec --dynamicPlugins, and does not link libnvinfer.
// See plugins/README.md.
#pragma once

#include <NvInferRuntime.h>
#include <NvInferVersion.h>

#include <cstdint>
#include <string>
#include <vector>

#if NV_TENSORRT_MAJOR < 10
#error "the AdaCoFSynthesis plugin is an IPluginV3: it needs TensorRT 10.0 or later headers"
#endif

#if defined(_WIN32)
#define SFADACOF_PLUGIN_API __declspec(dllexport)
#else
#define SFADACOF_PLUGIN_API __attribute__((visibility("default")))
#endif

namespace sfadacof
{

// The creator's identity; the ONNX node carries the same values (plugins/onnx_node.py: OP_TYPE, PLUGIN_VERSION,
// PLUGIN_NAMESPACE = DOMAIN). tests/test_plugin_contract.py checks that the two files agree.
constexpr char const* kPLUGIN_NAME = "AdaCoFSynthesis";
constexpr char const* kPLUGIN_VERSION = "1";
constexpr char const* kPLUGIN_NAMESPACE = "sfadacof";
constexpr char const* kFIELD_KERNEL_SIZE = "kernel_size";
constexpr char const* kFIELD_DILATION = "dilation";
// 0 (the default, also when absent): alpha/beta must be float32 whatever the frames' type; 1: float16 frames may come
// with float16 offsets too. Off by default because a weakly typed 10.x build (trtexec --fp16, polygraphy --fp16
// without --strongly-typed) picks the fastest accepted combination, and all-float16 would then win by timing: an
// offset of a few pixels keeps only 4-6 fractional bits in float16, and that fraction is the bilinear weight.
constexpr char const* kFIELD_FP16_OFFSETS = "fp16_offsets";
// Values used when a field is absent (the spec's defaults); the exporter always writes both.
constexpr int32_t kDEFAULT_KERNEL_SIZE = 5;
constexpr int32_t kDEFAULT_DILATION = 1;

// Inputs of the fused node, in order; one output (frame1).
enum InputIndex : int32_t
{
    kFRAME0 = 0,
    kFRAME2 = 1,
    kWEIGHT1 = 2,
    kALPHA1 = 3,
    kBETA1 = 4,
    kWEIGHT2 = 5,
    kALPHA2 = 6,
    kBETA2 = 7,
    kOCCLUSION = 8,
    kNB_INPUTS = 9
};
constexpr int32_t kNB_OUTPUTS = 1;

class AdaCoFSynthesisPlugin : public nvinfer1::IPluginV3,
                              public nvinfer1::IPluginV3OneCore,
                              public nvinfer1::IPluginV3OneBuild,
                              public nvinfer1::IPluginV3OneRuntime
{
public:
    // kernel_size / dilation must satisfy adacof_params_valid (the creator checks before constructing).
    AdaCoFSynthesisPlugin(int32_t kernel_size, int32_t dilation, int32_t fp16_offsets = 0);
    ~AdaCoFSynthesisPlugin() override = default;
    AdaCoFSynthesisPlugin(AdaCoFSynthesisPlugin const&) = delete;
    AdaCoFSynthesisPlugin& operator=(AdaCoFSynthesisPlugin const&) = delete;

    int32_t kernelSize() const noexcept
    {
        return mKernelSize;
    }
    int32_t dilation() const noexcept
    {
        return mDilation;
    }
    bool fp16Offsets() const noexcept
    {
        return mFp16Offsets != 0;
    }

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
        nvinfer1::DimsExprs const* shapeInputs, int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs,
        int32_t nbOutputs, nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t getNbOutputs() const noexcept override;
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;
    char const* getTimingCacheID() noexcept override;
    char const* getMetadataString() noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    int32_t mKernelSize;
    int32_t mDilation;
    int32_t mFp16Offsets; // kFIELD_FP16_OFFSETS: 0 or 1
    std::string mDescription; // timing-cache ID and metadata: "AdaCoFSynthesis(kernel_size=5,dilation=1,fp16_offsets=0)"
    std::vector<nvinfer1::PluginField> mSerialFields;
    nvinfer1::PluginFieldCollection mSerialFieldCollection{};
};

class AdaCoFSynthesisCreator : public nvinfer1::IPluginCreatorV3One
{
public:
    AdaCoFSynthesisCreator();
    ~AdaCoFSynthesisCreator() override = default;

    // Build phase: fields from the ONNX node's attributes (kINT32) or from the user; runtime phase: the fields of
    // getFieldsToSerialize(). Returns nullptr (and logs why) for invalid fields.
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

private:
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

} // namespace sfadacof

// Dynamic-loading entry points of libsfadacof_trt_plugin (IPluginRegistry::loadLibrary, trtexec --dynamicPlugins,
// plugin libraries serialised into version-compatible engines). libsfadacof_trt_register, built from the same
// source with SFADACOF_STATIC_REGISTRATION, has neither: it registers its creator when dlopen'ed into a process
// whose TensorRT runtime has this major (polygraphy --plugins).
// setLoggerFinder keeps the finder only if the calling runtime's major (getInferLibMajorVersion, looked up at run
// time) is the headers' NV_TENSORRT_MAJOR; otherwise the plugin logs to stderr.
extern "C" SFADACOF_PLUGIN_API void setLoggerFinder(nvinfer1::ILoggerFinder* finder);
extern "C" SFADACOF_PLUGIN_API nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators);
// Both libraries: the TensorRT headers' version, (MAJOR * 100 + MINOR) * 100 + PATCH like getInferLibVersion().
extern "C" SFADACOF_PLUGIN_API int32_t sfadacof_trt_plugin_tensorrt_version();
