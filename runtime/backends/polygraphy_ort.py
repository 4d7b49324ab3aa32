"""polygraphy's command line with the sfadacof custom op available to ONNX Runtime.

    python -m runtime.backends.polygraphy_ort run MODEL.onnx --onnxrt --load-inputs inputs.json --load-outputs ref.json \
        --atol 1e-4 --rtol 0

Why this exists: `polygraphy run --onnxrt` builds its own onnxruntime.SessionOptions (polygraphy 0.53:
backend/onnxrt/loader.py, SessionFromOnnx) and has no flag for a custom-op library or a Python hook, so on a
plugin-form graph it stops with "sfadacof:AdaCoFSynthesis(-1) is not a registered function/op". This module is
polygraphy's own CLI entry point (polygraphy.tools.main, every flag unchanged), run after one addition:
onnxruntime.InferenceSession is wrapped so that each session polygraphy creates gets the op registered
(runtime.backends.ort_custom_op: the C++ CPU kernel through onnxruntime-extensions). Nothing else in polygraphy is touched.
The standard-op form needs none of this: plain `polygraphy run MODEL.std.onnx --onnxrt ...` runs it.
"""

from __future__ import annotations

import sys


def install() -> None:
    """Wrap onnxruntime.InferenceSession so every new session resolves sfadacof::AdaCoFSynthesis (idempotent)."""
    import onnxruntime as ort

    from .ort_custom_op import add_to_session_options, register

    if getattr(ort.InferenceSession, "_sfadacof_custom_op", False):
        return
    register()
    base = ort.InferenceSession

    class InferenceSessionWithSfadacofOp(base):
        _sfadacof_custom_op = True

        def __init__(self, path_or_bytes, sess_options=None, providers=None, provider_options=None, **kwargs):
            options = sess_options if sess_options is not None else ort.SessionOptions()
            add_to_session_options(options)
            super().__init__(path_or_bytes, options, providers, provider_options, **kwargs)

    ort.InferenceSession = InferenceSessionWithSfadacofOp


def main(argv: list[str] | None = None) -> int:
    from polygraphy.tools import main as polygraphy_main

    from sfadacof.errors import UserError, one_line

    try:
        install()
    except UserError as e:  # the C++ library is not built, or onnxruntime-extensions is missing
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    sys.argv = ["polygraphy"] + (sys.argv[1:] if argv is None else list(argv))
    return polygraphy_main()


if __name__ == "__main__":
    sys.exit(main())
