"""The ONNX node <-> TensorRT plugin-creator contract for the fused AdaCoF synthesis op.

The exporter imports these constants so the ONNX graph and the plugin library cannot drift apart.
The C++ side states the same values in plugins/adacof_plugin.h (kPLUGIN_NAME, kPLUGIN_VERSION, kPLUGIN_NAMESPACE);
tests/test_plugin_contract.py checks that the two agree.

How TensorRT's ONNX parser finds the plugin (see plugins/README.md, "Parser mapping"): a node whose op_type is
not a built-in ONNX op goes to the parser's fallback plugin importer, which looks the plugin registry up by
(op_type, attribute `plugin_version` [default "1"], attribute `plugin_namespace` [default ""]); parsers from
TensorRT 10.10 on retry with the node's `domain` as the namespace when that first look-up fails. Setting the
domain AND the `plugin_namespace` attribute to the same string makes every 10.x/11.x parser resolve the same
creator. Only the attributes whose names the creator lists (kernel_size, dilation, fp16_offsets) are passed on as
plugin fields (ONNX INT -> PluginFieldType.kINT32); the two string attributes are read by the parser itself.

Offsets (alpha1/beta1/alpha2/beta2) are float32 in every graph the exporter writes. The plugin accepts float16
offsets only on a node with the INT attribute `fp16_offsets` = 1 (absent = 0): a weakly typed TensorRT 10.x build
picks the fastest combination the plugin accepts, and all-float16 would win by timing at the cost of the offsets'
fractions (the bilinear weights). The exporter never sets it; `make_attributes(..., fp16_offsets=True)` is the one
way to opt in.

ONNX Runtime runs the same node through a custom-op domain named DOMAIN.
"""

from __future__ import annotations

OP_TYPE = "AdaCoFSynthesis"
DOMAIN = "sfadacof"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = "sfadacof"
DOMAIN_VERSION = 1  # opset version to declare for DOMAIN in the model's opset_import

# Input order of the fused node (9 inputs) and its single output.
INPUT_NAMES = (
    "frame0", "frame2",
    "weight1", "alpha1", "beta1",
    "weight2", "alpha2", "beta2",
    "occlusion",
)
OUTPUT_NAMES = ("frame1",)

# Largest kernel size / dilation the plugin and the kernels accept (a guard against corrupt attributes, far above
# every released variant: K = 5 or 11, d = 1).
MAX_KERNEL_SIZE = 64
MAX_DILATION = 64


def check_attributes(kernel_size: int, dilation: int) -> tuple[int, int]:
    """Validate (kernel_size, dilation) as the plugin and the CPU kernel do; return them as ints.

    The op reads the unpadded frame with the replication pad folded into its index clamp, which gives the same
    output size as the frame only when (K - 1) * d is even (K odd, or d even): other cases are rejected.
    """
    k, d = int(kernel_size), int(dilation)
    if k != kernel_size or d != dilation:
        raise ValueError(f"kernel_size and dilation must be integers, got {kernel_size!r}, {dilation!r}")
    if not 1 <= k <= MAX_KERNEL_SIZE:
        raise ValueError(f"kernel_size must be in [1, {MAX_KERNEL_SIZE}], got {k}")
    if not 1 <= d <= MAX_DILATION:
        raise ValueError(f"dilation must be in [1, {MAX_DILATION}], got {d}")
    if ((k - 1) * d) % 2 != 0:
        raise ValueError(
            f"(kernel_size - 1) * dilation must be even (kernel_size={k}, dilation={d}): the synthesis output "
            "would be one pixel smaller than the frame"
        )
    return k, d


def kernel_pad(kernel_size: int, dilation: int) -> int:
    """The replication pad the op folds into its index clamp: ((K - 1) * d) // 2."""
    k, d = check_attributes(kernel_size, dilation)
    return ((k - 1) * d) // 2


FP16_OFFSETS = "fp16_offsets"  # the opt-in attribute (plugin field kFIELD_FP16_OFFSETS), see the module docstring


def make_attributes(kernel_size: int, dilation: int, fp16_offsets: bool = False) -> dict:
    """Attributes for the ONNX node, e.g. ``onnx.helper.make_node(OP_TYPE, ins, outs, domain=DOMAIN,
    **make_attributes(5, 1))``: two INT attributes and the two STRING attributes the TensorRT parser reads, plus
    `fp16_offsets` = 1 only when opted in (absent means 0, so the exported graphs stay as they were)."""
    k, d = check_attributes(kernel_size, dilation)
    attrs = {
        "kernel_size": k,
        "dilation": d,
        "plugin_version": PLUGIN_VERSION,
        "plugin_namespace": PLUGIN_NAMESPACE,
    }
    if fp16_offsets:
        attrs[FP16_OFFSETS] = 1
    return attrs
