"""calib's choices, in a module that imports nothing heavy: `python -m calib --help` reads them without loading
torch or ONNX Runtime (calib.quantize keeps the objects they name)."""

METHOD_NAMES: tuple[str, ...] = ("minmax", "entropy", "percentile")  # calib.quantize.METHODS' keys
PLACEMENTS: tuple[str, ...] = ("tensorrt", "ort-cpu")
