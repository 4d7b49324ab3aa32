"""TensorRT backend: a serialized engine run through pycuda (`--backend trt --engine E`).

  * The engine's sidecar (runtime.engine_meta) is checked first, against the GPU the backend runs on: wrong TensorRT
    version, wrong compute capability, a replaced engine file or a different plugin library are refused with the
    reason, not a deserialisation crash.
  * The plugin library (--plugin, else the one plugins/ built, else the one the sidecar names) is loaded for an engine
    that needs it. An engine that embeds it (--serialize-plugin: its sidecar says so, and only then is host code in
    the engine allowed) gets no second, on-disk copy: TensorRT loads the embedded one at deserialization (trtexec
    skips its --dynamicPlugins there too), and an on-disk build of another major could not even be loaded next to a
    10.x engine running on an 11.x runtime.
  * Device buffers and page-locked host buffers are allocated once per input shape and reused; a new shape
    re-allocates (set_input_shape + set_tensor_address).
  * Two CUDA streams: uploads run on a copy stream, execute_async_v3 and the download on the compute stream. In
    `infer_many`, frame pair n+1 is uploaded into the other of two input slots while pair n computes (events order
    the hand-over), so PCIe transfers hide behind compute.
  * Input/output dtypes come from the engine (an fp16-I/O engine gets fp16 host buffers); results are float32.
pycuda and tensorrt are imported lazily: without them this module still imports and the backend raises one line.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from sfadacof.checkpoint import file_sha256
from sfadacof.errors import UserError

from ..engine_meta import EngineMeta, Profile, format_shape, gpu_info, mismatches, read_sidecar
from ..tensorrt_env import default_plugin_library, import_pycuda, import_tensorrt, load_plugin_library
from .base import Backend

SLOTS = 2  # input double-buffering: upload of n+1 overlaps compute of n


class _Buffers:
    """Everything that depends on the input shape."""

    def __init__(self, cuda, shape: tuple[int, ...], inputs: list[tuple[str, np.dtype]],
                 outputs: list[tuple[str, np.dtype, tuple[int, ...]]]) -> None:
        self.shape = shape
        self.host_in = [[cuda.pagelocked_empty(shape, dt) for _, dt in inputs] for _ in range(SLOTS)]
        self.dev_in = [[cuda.mem_alloc(h.nbytes) for h in slot] for slot in self.host_in]
        self.host_out = [[cuda.pagelocked_empty(s, dt) for _, dt, s in outputs] for _ in range(SLOTS)]
        self.dev_out = [[cuda.mem_alloc(h.nbytes) for h in slot] for slot in self.host_out]
        self.uploaded = [cuda.Event() for _ in range(SLOTS)]   # H2D of slot done
        self.consumed = [cuda.Event() for _ in range(SLOTS)]   # execution reading slot done
        self.downloaded = [cuda.Event() for _ in range(SLOTS)]  # D2H of slot done

    def free(self) -> None:
        for group in (self.dev_in, self.dev_out):
            for slot in group:
                for d in slot:
                    d.free()


def plugin_library_for(meta: EngineMeta | None, plugin: str | Path | None) -> Path | None:
    """The plugin library to load for an engine with sidecar `meta` (None: unknown): none when the engine embeds it,
    else `plugin`, else the one plugins/ built, else the one the engine was built with when it still exists."""
    if meta is not None and meta.plugin_serialized:
        return None
    path = Path(plugin) if plugin else default_plugin_library()
    if path is None and meta is not None and meta.plugin_path and Path(meta.plugin_path).is_file():
        path = Path(meta.plugin_path)
    return path


class TensorRTBackend(Backend):
    name = "trt"

    def __init__(self, engine_path: str | Path, *, plugin: str | Path | None = None, check_sidecar: bool = True,
                 device: int = 0) -> None:
        self.device = device
        self.engine_path = Path(engine_path)
        if not self.engine_path.is_file():
            raise UserError(f"{self.engine_path}: engine file not found")
        trt = import_tensorrt()
        cuda = import_pycuda()
        self.trt, self.cuda = trt, cuda
        cuda.init()
        # The primary context is the one the CUDA runtime (and so TensorRT) uses: share it instead of making another.
        self.ctx = cuda.Device(device).retain_primary_context()
        self.ctx.push()
        try:
            self._open(plugin, check_sidecar)
        except BaseException:
            self.ctx.pop()
            raise

    def _open(self, plugin, check_sidecar: bool) -> None:
        trt, cuda = self.trt, self.cuda
        self.meta: EngineMeta | None = None
        try:
            self.meta = read_sidecar(self.engine_path)
        except UserError:
            if check_sidecar:
                raise
        embedded = bool(self.meta and self.meta.plugin_serialized)
        plugin_path = plugin_library_for(self.meta, plugin)
        if embedded and plugin:
            print(f"{self.engine_path}: the engine embeds the plugin library; {plugin} is not loaded", file=sys.stderr)
        if check_sidecar and self.meta is not None:
            name, cc = gpu_info(self.device)
            bad = mismatches(self.meta, tensorrt_version=trt.__version__, compute_capability=cc,
                             engine_sha256=file_sha256(self.engine_path),
                             plugin_sha256=file_sha256(plugin_path) if plugin_path and plugin_path.is_file() else None)
            if bad:
                raise UserError(f"{self.engine_path}: refusing to run this engine here: {'; '.join(bad)} "
                                "(rebuild it with runtime.build_engine, or pass --skip-engine-check)")
        self.logger = trt.Logger(trt.Logger.WARNING)
        if plugin_path is None and not embedded:
            raise UserError(f"{self.engine_path}: the engine needs the AdaCoFSynthesis plugin library and none was found "
                            "(build it with python -m plugins.build, or pass --plugin LIB)")
        self.plugin_sha256 = load_plugin_library(trt, plugin_path, self.logger)
        self.runtime = trt.Runtime(self.logger)
        if self.meta is not None and (self.meta.version_compatible or embedded):
            # The lean runtime and the plugin library travel inside a version-compatible engine: host code that
            # TensorRT refuses to run unless allowed. Allowed only where the sidecar built with it says so.
            self.runtime.engine_host_code_allowed = True
        self.engine = self.runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self.engine is None:
            raise UserError(f"{self.engine_path}: TensorRT could not deserialize the engine (built by another "
                            "TensorRT version or for another GPU? see its .json sidecar)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = trt.TensorIOMode.INPUT
        self.inputs = [(n, np.dtype(trt.nptype(self.engine.get_tensor_dtype(n)))) for n in names
                       if self.engine.get_tensor_mode(n) == mode]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) != mode]
        if len(self.inputs) != 2 or len(self.output_names) != 1:
            raise UserError(f"{self.engine_path}: expected 2 inputs and 1 output, found "
                            f"{[n for n, _ in self.inputs]} -> {self.output_names}")
        self.profile = Profile.from_json(self.meta.profile) if self.meta is not None else None
        self.copy_stream = cuda.Stream()
        self.compute_stream = cuda.Stream()
        self.buffers: _Buffers | None = None

    # -- buffers -------------------------------------------------------------------------------------------------
    def _ensure(self, shape: tuple[int, ...]) -> _Buffers:
        if self.buffers is not None and self.buffers.shape == shape:
            return self.buffers
        if self.profile is not None:
            why = self.profile.contains(shape)
            if why:
                raise UserError(f"{self.engine_path}: {why}")
        if self.buffers is not None:
            self.compute_stream.synchronize()
            self.buffers.free()
        for name, _ in self.inputs:
            if not self.context.set_input_shape(name, shape):
                raise UserError(f"{self.engine_path}: the engine rejects input shape {shape} for {name}")
        outputs = []
        for name in self.output_names:
            dt = np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(name)))
            outputs.append((name, dt, tuple(self.context.get_tensor_shape(name))))
        self.buffers = _Buffers(self.cuda, shape, self.inputs, outputs)
        return self.buffers

    def _bind(self, b: _Buffers, slot: int) -> None:
        for (name, _), d in zip(self.inputs, b.dev_in[slot]):
            self.context.set_tensor_address(name, int(d))
        for name, d in zip(self.output_names, b.dev_out[slot]):
            self.context.set_tensor_address(name, int(d))

    def _submit(self, b: _Buffers, slot: int, f0: np.ndarray, f2: np.ndarray) -> None:
        cuda = self.cuda
        b.consumed[slot].synchronize()  # the execution that last read this slot is done: host+device free
        b.downloaded[slot].synchronize()
        for host, dev, frame in zip(b.host_in[slot], b.dev_in[slot], (f0, f2)):
            np.copyto(host, frame, casting="same_kind")
            cuda.memcpy_htod_async(dev, host, self.copy_stream)
        b.uploaded[slot].record(self.copy_stream)
        self.compute_stream.wait_for_event(b.uploaded[slot])
        self._bind(b, slot)
        if not self.context.execute_async_v3(self.compute_stream.handle):
            raise UserError(f"{self.engine_path}: TensorRT execution failed")
        b.consumed[slot].record(self.compute_stream)
        for host, dev in zip(b.host_out[slot], b.dev_out[slot]):
            cuda.memcpy_dtoh_async(host, dev, self.compute_stream)
        b.downloaded[slot].record(self.compute_stream)

    def _collect(self, b: _Buffers, slot: int) -> np.ndarray:
        b.downloaded[slot].synchronize()
        return b.host_out[slot][0].astype(np.float32, copy=True)

    # -- Backend -------------------------------------------------------------------------------------------------
    def infer(self, frame0: np.ndarray, frame2: np.ndarray) -> np.ndarray:
        if frame0.shape != frame2.shape:
            raise UserError(f"frames differ in shape: {frame0.shape} vs {frame2.shape}")
        b = self._ensure(tuple(frame0.shape))
        self._submit(b, 0, frame0, frame2)
        return self._collect(b, 0)

    def infer_many(self, pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[np.ndarray]:
        """Pipelined: submit n+1 (its upload overlaps n's compute), then collect n. Yields in input order."""
        pending: tuple[_Buffers, int] | None = None
        n = 0
        for f0, f2 in pairs:
            b = self._ensure(tuple(f0.shape))
            if pending is not None and pending[0] is not b:  # shape changed: drain the old buffers first
                yield self._collect(*pending)
                pending = None
            slot = n % SLOTS
            self._submit(b, slot, f0, f2)
            if pending is not None:
                yield self._collect(*pending)
            pending = (b, slot)
            n += 1
        if pending is not None:
            yield self._collect(*pending)

    def describe(self) -> dict:
        d = {"backend": self.name, "engine": str(self.engine_path), "tensorrt": self.trt.__version__,
             "precision": self.meta.precision if self.meta else "unknown",
             "inputs": {n: str(dt) for n, dt in self.inputs}}
        if self.meta is not None:
            d.update(gpu=self.meta.gpu_name, compute_capability=self.meta.compute_capability,
                     onnx_sha256=self.meta.onnx_sha256, profile=self.meta.profile)
        return d

    def close(self) -> None:
        if getattr(self, "ctx", None) is None:
            return
        try:
            self.compute_stream.synchronize()
            if self.buffers is not None:
                self.buffers.free()
            self.buffers = None
            self.context = None
            self.engine = None
        finally:
            self.ctx.pop()
            self.ctx = None


class OnDemandTensorRTBackend(Backend):
    """`--backend trt` without `--engine`: the checkpoint's cached ONNX export, built into a cached engine
    (runtime.engine_cache) for the default profile at once, and rebuilt with a wider profile the first time a frame
    falls outside it. Runs with the same key reuse the engines instantly."""

    name = "trt"

    def __init__(self, onnx: Path, *, precision: str = "fp32", plugin: Path | None = None, device: int = 0) -> None:
        self.onnx, self.precision, self.device = Path(onnx), precision, device
        self.plugin = Path(plugin) if plugin else default_plugin_library()
        if self.plugin is None:
            raise UserError("--backend trt: the AdaCoFSynthesis plugin library is not built (python -m plugins.build "
                            "on a machine with the TensorRT headers), or pass --plugin LIB")
        self.profile = Profile()
        self.inner = self._open(self.profile)

    def _open(self, profile: Profile) -> TensorRTBackend:
        from ..engine_cache import cached_engine

        path = cached_engine(self.onnx, precision=self.precision, profile=profile, plugin=self.plugin,
                             device=self.device)
        return TensorRTBackend(path, plugin=self.plugin, device=self.device)

    def _fit(self, shape: tuple[int, ...]) -> TensorRTBackend:
        if self.profile.contains(shape) is not None and len(shape) == 4:
            wider = Profile.from_args(None, None, format_shape(tuple(max(a, b) for a, b in zip(self.profile.max, shape))))
            self.inner.close()
            self.profile = wider
            self.inner = self._open(wider)
        return self.inner

    def infer(self, frame0: np.ndarray, frame2: np.ndarray) -> np.ndarray:
        return self._fit(tuple(frame0.shape)).infer(frame0, frame2)

    def infer_many(self, pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[np.ndarray]:
        for shape, run in itertools.groupby(pairs, key=lambda pair: tuple(pair[0].shape)):
            yield from self._fit(shape).infer_many(run)  # pipelined within each run of one shape

    def describe(self) -> dict:
        d = self.inner.describe()
        d["engine_cache"] = "built on demand from " + str(self.onnx)
        return d

    def close(self) -> None:
        self.inner.close()
