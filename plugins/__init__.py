"""AdaCoF synthesis op outside PyTorch: the ONNX node contract, the C++ CPU kernel, CUDA kernels and the
TensorRT plugin (see plugins/README.md).

Importing this package loads nothing native; `plugins.cpu_op` loads the CPU library on first use.
"""
