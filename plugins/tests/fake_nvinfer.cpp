// A fake libnvinfer.so.<major> (built as fake_nvinfer/libnvinfer.so.<major>, no SONAME): the version functions
// and a recording getPluginRegistry, nothing else. tests/test_plugin_trt_harness.py loads it RTLD_LOCAL, as
// Python's `import tensorrt` loads the real one (out of reach of dlsym(RTLD_DEFAULT)), then dlopens
// libsfadacof_trt_register, which must find this runtime among the loaded objects and register its creator here.
#include "fake_registry.h"

#include <NvInferVersion.h>

#include <string>

namespace
{
sfadacof_test::FakeRegistry gRegistry;
std::string gReport;
} // namespace

#pragma GCC visibility push(default)
extern "C" int32_t getInferLibMajorVersion() noexcept
{
    return NV_TENSORRT_MAJOR;
}
extern "C" int32_t getInferLibVersion() noexcept
{
    return (NV_TENSORRT_MAJOR * 100 + NV_TENSORRT_MINOR) * 100 + NV_TENSORRT_PATCH;
}
extern "C" nvinfer1::IPluginRegistry* getPluginRegistry() noexcept
{
    return &gRegistry;
}
// "name/version/creator namespace/namespace argument" of each registration, ";"-separated.
extern "C" char const* fake_nvinfer_registrations() noexcept
{
    gReport.clear();
    for (auto const& r : gRegistry.registrations)
    {
        gReport += (gReport.empty() ? "" : ";") + r.name + "/" + r.version + "/" + r.creatorNamespace + "/"
            + r.argNamespace;
    }
    return gReport.c_str();
}
#pragma GCC visibility pop
