"""ONNX export of the SF-AdaCoF model family (`python -m export.to_onnx`), in two synthesis forms (the custom
AdaCoFSynthesis node for TensorRT's plugin / ONNX Runtime's custom op, or standard ONNX ops), plus the ONNX Runtime
registration of the custom op (export.ort_custom_op)."""
