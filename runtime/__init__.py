"""Deployment runtime: engines, inference backends, accuracy checks, benchmarks, media I/O.

`from runtime import Interpolator` is the Python API (runtime/api.py), resolved on first use so that importing a
CLI module stays cheap."""


def __getattr__(name: str):
    if name == "Interpolator":
        from .api import Interpolator

        return Interpolator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Interpolator"]
