"""INT8 by calibration on frame pairs: explicit Q/DQ ONNX graphs (for TensorRT's `--int8` and ONNX Runtime), their
accuracy against FP32 on held-aside triplets, and their ORT CPU speed. Entry point: `python -m calib`."""
