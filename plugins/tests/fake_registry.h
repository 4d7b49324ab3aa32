// A recording stand-in for TensorRT's plugin registry (the headers' IPluginRegistry, whose layout differs between
// 10.x and 11.x, so only a library of the same major may call it). Used by the plugin harness and by the fake
// libnvinfer (fake_nvinfer.cpp) of the register library's test.
#pragma once

#include <NvInferRuntime.h>

#include <cstring>
#include <string>
#include <vector>

namespace sfadacof_test
{
using namespace nvinfer1;

// Records what a plugin library does to the registry; implements the headers' IPluginRegistry (whose layout
// differs between 10.x and 11.x, so only a library of the same major may call it).
class FakeRegistry : public IPluginRegistry
{
public:
    struct Registration
    {
        std::string name, version, creatorNamespace, argNamespace;
    };
    std::vector<Registration> registrations;
    std::vector<IPluginCreatorInterface*> creators;
    int calls = 0; // every method call, registrations included

    bool registerCreator(IPluginCreatorInterface& creator, AsciiChar const* const pluginNamespace) noexcept override
    {
        ++calls;
        Registration r;
        if (std::strcmp(creator.getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") == 0)
        {
            auto& c = static_cast<IPluginCreatorV3One&>(creator);
            r = Registration{c.getPluginName(), c.getPluginVersion(), c.getPluginNamespace(), ""};
        }
        r.argNamespace = pluginNamespace != nullptr ? pluginNamespace : "(null)";
        registrations.push_back(r);
        creators.push_back(&creator);
        return true;
    }
    IPluginCreatorInterface* getCreator(
        AsciiChar const* const pluginName, AsciiChar const* const pluginVersion, AsciiChar const* const ns) noexcept override
    {
        ++calls;
        for (auto* c : creators)
        {
            auto* v3 = static_cast<IPluginCreatorV3One*>(c);
            if (std::strcmp(v3->getPluginName(), pluginName) == 0 && std::strcmp(v3->getPluginVersion(), pluginVersion) == 0
                && std::strcmp(v3->getPluginNamespace(), ns) == 0)
            {
                return c;
            }
        }
        return nullptr;
    }
    void setErrorRecorder(IErrorRecorder* const) noexcept override
    {
        ++calls;
    }
    IErrorRecorder* getErrorRecorder() const noexcept override
    {
        return nullptr;
    }
    bool isParentSearchEnabled() const override
    {
        return false;
    }
    void setParentSearchEnabled(bool const) override
    {
        ++calls;
    }
    PluginLibraryHandle loadLibrary(AsciiChar const*) noexcept override
    {
        ++calls;
        return nullptr;
    }
    void deregisterLibrary(PluginLibraryHandle) noexcept override
    {
        ++calls;
    }
    IPluginCreatorInterface* const* getAllCreators(int32_t* const numCreators) const noexcept override
    {
        *numCreators = static_cast<int32_t>(creators.size());
        return creators.data();
    }
    bool deregisterCreator(IPluginCreatorInterface const&) noexcept override
    {
        ++calls;
        return false;
    }
    IPluginResource* acquirePluginResource(AsciiChar const*, IPluginResource*) noexcept override
    {
        ++calls;
        return nullptr;
    }
    int32_t releasePluginResource(AsciiChar const*) noexcept override
    {
        ++calls;
        return -1;
    }
    IPluginCreatorInterface* const* getAllCreatorsRecursive(int32_t* const numCreators) noexcept override
    {
        return getAllCreators(numCreators);
    }
#if NV_TENSORRT_MAJOR < 11
    // The V1-creator methods that 10.x still declares (deprecated there; implemented only to be instantiable).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    bool registerCreator(IPluginCreator&, AsciiChar const* const) noexcept override
    {
        ++calls;
        return false;
    }
    IPluginCreator* const* getPluginCreatorList(int32_t* const numCreators) const noexcept override
    {
        *numCreators = 0;
        return nullptr;
    }
    IPluginCreator* getPluginCreator(AsciiChar const*, AsciiChar const*, AsciiChar const*) noexcept override
    {
        ++calls;
        return nullptr;
    }
    bool deregisterCreator(IPluginCreator const&) noexcept override
    {
        ++calls;
        return false;
    }
#pragma GCC diagnostic pop
#endif
};

} // namespace sfadacof_test
