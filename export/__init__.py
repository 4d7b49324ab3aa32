"""ONNX export of the SF-AdaCoF model family (`python -m export.to_onnx`), in two synthesis forms (the custom
AdaCoFSynthesis node for TensorRT's plugin / ONNX Runtime's custom op, or standard ONNX ops), the FP16 conversion of
an export (export.fp16_graph) and the export cache the runtime uses (export.cache). ONNX Runtime's registration of the
custom op lives with the backend that needs it (runtime.backends.ort_custom_op)."""
