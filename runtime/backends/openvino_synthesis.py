"""The AdaCoF synthesis on OpenVINO: two nodes that run the project's C++ CPU kernel (the default), or an
OpenVINO-native subgraph, either put in place of the standard-op export's lowering.

    replace_synthesis(model, input_tensors, output_tensor, kernel_size, dilation, form="kernel") -> bool
    infer_with_kernel(request, feed, errors)         # infer, signals held, the node's error raised here

Why kernel nodes (form "kernel", the CPU default's since issue 26): the export's lowering runs 50 taps x 4
bilinear corners as GatherElements with Expand-ed indices, reference (non-JIT) kernels on OpenVINO's CPU plugin:
per-node profiles (benchmarks/cpu/node_profile_*.json) put it at 73% of the INT8 default's time on AMX and ~27% of
the fp32 model's under an AVX2 cap. The C++ kernel (plugins/adacof_cpu.cpp, the arithmetic the CUDA kernels and
the TensorRT plugin share, plugins/adacof_math.h) computes the same op directly, multi-threaded, in fp32.
How: an openvino.Op subclass (OpenVINO's Python custom-op API) whose evaluate() hands the input buffers and the
output buffer to the kernel (plugins.cpu_op, ctypes: the GIL is released while it runs), as two nodes: direction 1
(frame0 and its maps -> o1), then direction 2 blended with o1 (sfadacof_cpu_direction_f32; together bit-identical
to the fused op), so that only one direction's three (B, K*K, H, W) maps are alive at a time (one node
holding all six peaked at 2.51 GB at 1920x1080 in fp32, against 1.91 GB for the two and 1.78 GB for the ops).
The CPU plugin runs such a node as a "Reference" node in the precision of its declared types, f32, also in bf16 or
int8 models (the backend checks that on every compiled graph). The nodes exist only in memory: OpenVINOBackend swaps
them into a clone of its model right before each compile, so the model it holds (what calib.openvino_int8 quantizes
and saves as IR) keeps the export's standard ops.
Errors and signals: evaluate() is called from C++ inside infer(); a Python exception must not unwind through
OpenVINO, so the node records it and returns False, and infer_with_kernel() re-raises it after infer returns. Ctrl-C,
SIGTERM and SIGHUP are held during infer (sfadacof.interrupts.deferred_sigint: a signal delivered inside the
callback would otherwise be raised there).

Form "gather" (opt-in, OpenVINOBackend(..., synthesis="gather")): measured on the
project's 2-core machine, interleaved in one process, 960x507: bf16 1.72 s against 1.81 s a frame, fp32 2.30 against
2.43 s; but peak memory at 1920x1080 2.52 GB against 1.95 GB (bf16; fp32 2.45 against 1.88) -- not from the Gather
itself (GatherElements in this structure measured the same) nor from the edge pad (per-corner clamps likewise);
where OpenVINO's memory planner loses the 0.57 GB was not found.

The standard-op export (export/standard_synthesis.py) writes the synthesis in plain ONNX ops, one GatherElements
per bilinear corner of each tap with its index Expand-ed over the channels: ONNX's Gather has no batch dimensions,
and on OpenVINO's CPU plugin GatherElements and that Expand are reference (non-JIT) kernels. OpenVINO's own Gather
has `batch_dims`, so this module rebuilds the same arithmetic from the same nine input tensors (named by
export.core) with one index computation per tap:

  * the frame is edge-padded by one pixel on every side (Pd, (H+2) x (W+2), viewed flat as (B, C, N));
  * per tap: P = clip(i + k*d - pad + trunc(alpha) + 1, 0, H) and likewise Qc over [0, W]; Pd[P, Qc] and its right,
    lower and lower-right neighbours are exactly the four corners the op reads, each clamped into the frame on its
    own (MODEL.md): for r = i + k*d - pad + trunc(alpha), padded row P is row clip(P - 1, 0, H-1) = clip(r, 0, H-1)
    and padded row P + 1 is row clip(P, 0, H-1) = clip(r + 1, 0, H-1), because r <= -1 maps both to row 0 and
    r >= H-1 both to row H-1 either way (columns alike). So one index computation per tap: n = P*(W+2) + Qc, the
    corners at n, n + 1, n + W+2, n + W+3 (int32, in range by construction);
  * Gather(Pd flat, n as (B, H*W), axis 2, batch_dims 1) -> (B, C, H*W) per corner: no index Expand over the
    channels; the per-tap maps come from one planar Split of each (B, K*K, H*W) map;
  * the corners times W*(1-fa)*(1-fe), W*(1-fa)*fe, W*fa*(1-fe), W*fa*fe, summed (00 + 01) + (10 + 11) per tap;
    trunc(x) = Sign(x) * Floor(|x|), fa = alpha - trunc(alpha) (negative offsets extrapolate, as the op does).
  * the two directions are blended as the op does: v * o1 + (1 - v) * o2.
Same arithmetic up to float32 summation order (the four corner products are summed by ReduceSum); one tap at a time,
so the extra memory is a few frame-sized tensors at any K. Indices are int32: (H+2)(W+2) < 2^31.
"""

from __future__ import annotations

import threading

import numpy as np

# Opset of the ops built here (Gather with batch_dims is opset 8; Pad with "edge" mode opset 1).
_OPSET = "opset13"


def _ops():
    import importlib

    return importlib.import_module(f"openvino.{_OPSET}")


def build_synthesis(f0, f2, w1, a1, b1, w2, a2, b2, occ, kernel_size: int, dilation: int):
    """The fused op's output (B, C, H, W) from its nine inputs (ov.Output), kernel_size K and dilation d."""
    o = _ops()

    def i64(v):
        return o.constant(np.array(v, dtype=np.int64))

    def f32(v):
        return o.constant(np.array(v, dtype=np.float32))

    pad = ((kernel_size - 1) * dilation) // 2
    shape = o.shape_of(f0, "i64")  # (B, C, H, W)
    h = o.gather(shape, i64(2), i64(0))  # scalars
    w = o.gather(shape, i64(3), i64(0))
    h_f, w_f = o.convert(h, "f32"), o.convert(w, "f32")
    stride = o.convert(o.add(w, i64(2)), "i32")  # W + 2: the row stride of the padded frame
    flat = i64([1, 1, -1])
    # i and j of every flat pixel n = i*W + j, as (1, 1, H*W) float
    hw = o.concat([o.unsqueeze(h, i64(0)), o.unsqueeze(w, i64(0))], 0)
    rows = o.reshape(o.broadcast(o.reshape(o.range(f32(0.0), h_f, f32(1.0), "f32"), i64([-1, 1]), False), hw),
                     flat, False)
    cols = o.reshape(o.broadcast(o.range(f32(0.0), w_f, f32(1.0), "f32"), hw), flat, False)
    zero = f32(0.0)
    one = f32(1.0)

    def taps(x):
        """(B, K*K, H, W) -> K*K tensors (B, 1, H*W): slices of a planar view along its outer axis (one Slice per
        tap, as the export's lowering does: a single Split with K*K outputs measured 0.6 GB more at 1080p)."""
        flat_x = o.reshape(x, i64([0, 0, -1]), True)
        return [o.slice(flat_x, i64([t]), i64([t + 1]), i64([1]), i64([1])).output(0)
                for t in range(kernel_size * kernel_size)]

    def trunc(x):
        return o.multiply(o.sign(x), o.floor(o.abs(x)))

    def direction(frame, weight, alpha, beta):
        # the frame edge-padded by one pixel, flat: (B, C, (H+2)*(W+2))
        src = o.reshape(o.pad(frame, i64([0, 0, 1, 1]), i64([0, 0, 1, 1]), "edge"), i64([0, 0, -1]), True)
        acc = None
        for t, (a, e, wt) in enumerate(zip(taps(alpha), taps(beta), taps(weight))):
            k, l = divmod(t, kernel_size)
            a_int, e_int = trunc(a), trunc(e)
            fa, fe = o.subtract(a, a_int), o.subtract(e, e_int)
            # padded row/column of the top-left corner, clamped so that its +1 neighbour is the clamped r + 1
            p = o.minimum(o.maximum(o.add(o.add(a_int, rows), f32(k * dilation - pad + 1)), zero), h_f)
            c = o.minimum(o.maximum(o.add(o.add(e_int, cols), f32(l * dilation - pad + 1)), zero), w_f)
            i00 = o.squeeze(o.add(o.multiply(o.convert(p, "i32"), stride), o.convert(c, "i32")), i64([1]))  # (B, HW)
            corners = [o.gather(src, idx, i64(2), 1) for idx in  # (B, C, H*W) each
                       (i00, o.add(i00, np.int32(1)), o.add(i00, stride), o.add(o.add(i00, stride), np.int32(1)))]
            ga, ge = o.subtract(one, fa), o.subtract(one, fe)
            w_ga, w_fa = o.multiply(wt, ga), o.multiply(wt, fa)
            coef = (o.multiply(w_ga, ge), o.multiply(w_ga, fe), o.multiply(w_fa, ge), o.multiply(w_fa, fe))
            terms = [o.multiply(x, cf) for x, cf in zip(corners, coef)]
            tap = o.add(o.add(terms[0], terms[1]), o.add(terms[2], terms[3]))
            acc = tap if acc is None else o.add(acc, tap)
        return o.reshape(acc, shape, False)  # (B, C, H, W)

    out1 = direction(f0, w1, a1, b1)
    out2 = direction(f2, w2, a2, b2)
    return o.add(o.multiply(occ, out1), o.multiply(o.subtract(one, occ), out2))


def raise_errors(errors: list) -> None:
    """Re-raise (and clear) what a kernel node recorded in `errors` during the last infer:
    KeyboardInterrupt as is, anything else as one RuntimeError line."""
    if not errors:
        return
    e = errors[0]
    errors.clear()
    if isinstance(e, (KeyboardInterrupt, MemoryError)):  # as they are: the CLIs end these in their own line
        raise e
    from sfadacof.errors import one_line

    raise RuntimeError(f"the AdaCoF synthesis node (C++ CPU kernel): {one_line(e)}") from None


def infer_with_kernel(request, feed, errors: list) -> None:
    """request.infer(feed) for a model holding a kernel node whose evaluate() records into `errors`: signals held
    until infer returns (the node calls back into Python), the node's own error raised in its place."""
    from sfadacof.interrupts import deferred_sigint

    with deferred_sigint():
        try:
            request.infer(feed)
        except RuntimeError:
            raise_errors(errors)  # the node's own error, where it was the node that failed
            raise
    raise_errors(errors)


def kernel_library() -> str | None:
    """Path of the C++ CPU kernel library, or None when this install has none (then the lowering runs)."""
    from plugins._libs import LibraryNotBuilt
    from plugins.cpu_op import library_path

    try:
        return library_path()
    except LibraryNotBuilt:
        return None


def synthesis_form_here() -> str:
    """The form OpenVINOBackend's default ("auto") runs on this install: "kernel" where the library is built,
    else "ops" (the export's lowering)."""
    return "kernel" if kernel_library() is not None else "ops"


def _kernel_op_class():
    """The openvino.Op subclass, defined on first use (importing this module must not need OpenVINO)."""
    global _KernelStep
    if _KernelStep is not None:
        return _KernelStep
    from openvino import Op

    from plugins.cpu_op import adacof_direction_cpu

    class KernelStep(Op):
        """One step of the op computed by plugins/adacof_cpu.cpp (sfadacof_cpu_direction_f32): "first", inputs
        (frame0, weight1, alpha1, beta1) -> o1; "second", inputs (o1, frame2, weight2, alpha2, beta2, occlusion)
        -> V * o1 + (1 - V) * o2, the op's output. Together they give the fused op bit for bit."""

        def __init__(self, inputs=None, step: str = "first", kernel_size: int = 5, dilation: int = 1,
                     threads: int = 0, errors: list | None = None):
            super().__init__(self, inputs)
            self.step, self.kernel_size, self.dilation, self.threads = step, int(kernel_size), int(dilation), \
                int(threads)
            # where evaluate() records an exception, owned by the caller: evaluate may run on an OpenVINO thread
            self.errors = errors if errors is not None else []

        def validate_and_infer_types(self):
            # the frame's type and shape; by input count (runs inside Op.__init__, before the attributes exist)
            frame = 0 if self.get_input_size() == 4 else 1
            self.set_output_type(0, self.get_input_element_type(frame), self.get_input_partial_shape(frame))

        def clone_with_new_inputs(self, new_inputs):
            return KernelStep(new_inputs, self.step, self.kernel_size, self.dilation, self.threads, self.errors)

        def visit_attributes(self, visitor):
            return True

        def has_evaluate(self):
            return True

        def evaluate(self, outputs, inputs):
            try:
                arrays = [t.data for t in inputs]
                if self.step == "first":
                    frame, weight, alpha, beta = arrays
                    first = occlusion = None
                else:
                    first, frame, weight, alpha, beta, occlusion = arrays
                outputs[0].shape = frame.shape
                adacof_direction_cpu(frame, weight, alpha, beta, self.kernel_size, self.dilation, first=first,
                                     occlusion=occlusion, num_threads=self.threads, out=outputs[0].data)
                return True
            except BaseException as e:  # noqa: BLE001 -- nothing may unwind into OpenVINO's C++ (module docstring)
                with _lock:
                    self.errors.append(e)
                return False

    _KernelStep = KernelStep
    return KernelStep


_KernelStep = None
_lock = threading.Lock()
FORMS = ("kernel", "gather")


def replace_synthesis(model, input_tensors: tuple[str, ...], output_tensor: str, kernel_size: int,
                      dilation: int, form: str = "kernel", threads: int = 0, errors: list | None = None) -> bool:
    """Swap the subgraph between the tensors `input_tensors` (the fused node's nine inputs) and `output_tensor` for
    the kernel node (form "kernel": `threads` for the kernel, 0 for every hardware thread; `errors`, the list its
    evaluate() records exceptions in, for raise_errors) or build_synthesis ("gather").
    False (model unchanged) when any of the tensors is missing."""
    if form not in FORMS:
        raise ValueError(f"synthesis form {form!r}: choose {', '.join(FORMS)}")
    outputs = {}
    for node in model.get_ordered_ops():
        if node.get_type_name() == "Result":  # a Result shares its input's tensor names (extra outputs of a test)
            continue
        for out in node.outputs():
            for name in out.get_names():
                outputs[name] = out
    if any(t not in outputs for t in (*input_tensors, output_tensor)):
        return False
    inputs = [outputs[t] for t in input_tensors]
    if form == "kernel":
        # two nodes, direction 1 then direction 2 with the blend, and o1 the second node's first input: OpenVINO's
        # CPU plugin orders execution depth first from the output, so direction 1's heads run, their maps are
        # consumed and freed, and only then direction 2's heads run. One node taking all nine inputs kept the six
        # (B, K*K, H, W) maps alive together: 2.51 against 1.78 GB peak RSS at 1920x1080 (fp32, the ops form).
        f0, f2, w1, a1, b1, w2, a2, b2, occ = inputs
        step = _kernel_op_class()
        first = step([f0, w1, a1, b1], "first", kernel_size, dilation, threads, errors)
        new = step([first.output(0), f2, w2, a2, b2, occ], "second", kernel_size, dilation, threads, errors)
    else:
        new = build_synthesis(*inputs, kernel_size=kernel_size, dilation=dilation)
    old = outputs[output_tensor]
    old.get_tensor().set_names(set())
    for target in list(old.get_target_inputs()):
        target.replace_source_output(new.output(0))
    new.output(0).get_tensor().set_names({output_tensor})
    model.validate_nodes_and_infer_types()
    return True
