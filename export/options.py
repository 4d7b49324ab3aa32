"""The export's options, in a module that imports nothing heavy: command lines (export.to_onnx --help) read them
without loading torch or onnx (export.core re-exports them)."""

SYNTHESIS_FORMS: tuple[str, ...] = ("plugin", "onnx")
EXPORTERS: tuple[str, ...] = ("dynamo", "torchscript")
DEFAULT_OPSET = 18
# Opsets the graph is valid for: 13 is the first with Resize/Clip/Gather in the forms used here and Softmax over one
# axis; 20 is the newest both torch exporters and TensorRT 10's parser accept.
MIN_OPSET, MAX_OPSET = 13, 20
