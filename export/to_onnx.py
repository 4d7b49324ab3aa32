"""Export a checkpoint to ONNX.

    python -m export.to_onnx [CKPT] [-o OUT.onnx] [--synthesis plugin|onnx|both] [--variant V] [--kernel-size K]
                             [--dilation D] [--opset N] [--exporter auto|dynamo|torchscript] [--json]

CKPT defaults to the shipped checkpoint (sfadacof/weights/sf_adacof_default.pth). The checkpoint is read by
sfadacof.checkpoint.load_checkpoint (variant and K detected from the weights, dilation from a config.txt beside it;
the flags override). OUT defaults to CKPT's name with `.onnx` (`.std.onnx` for the standard-op form) in the current
directory. `--synthesis both` writes the plugin form to OUT and the standard-op form beside it (`.std.onnx`) from one
trace. To check an export against the PyTorch model, run it on real pairs with
    python -m runtime.accuracy PAIRS --backend ort --onnx MODEL.onnx
(the former --verify flag: export does not depend on the runtime). Errors (missing/corrupt/mismatching checkpoint,
bad flags) are one line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sfadacof import cli_args
from sfadacof.errors import UserError, cli_command
from sfadacof.outputs import check_outputs, output_file

from .options import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, SYNTHESIS_FORMS


def standard_form_path(path: Path) -> Path:
    """Where `--synthesis both` puts the standard-op form next to the plugin form."""
    name = path.name[:-5] if path.name.endswith(".onnx") else path.name
    return path.with_name(f"{name}.std.onnx")


def build_parser() -> argparse.ArgumentParser:
    p = cli_args.ArgumentParser(prog="python -m export.to_onnx", description=__doc__.split("\n\n")[0],
                                epilog="check an export against PyTorch: python -m runtime.accuracy PAIRS --backend ort "
                                       "--onnx MODEL.onnx")
    p.add_argument("checkpoint", nargs="?", type=Path, default=None,
                   help="checkpoint (.pth); default: the shipped sfadacof/weights/sf_adacof_default.pth")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="ONNX file to write (default: CKPT's name with .onnx, in the current directory)")
    p.add_argument("--synthesis", choices=SYNTHESIS_FORMS + ("both",), default="plugin",
                   help="plugin: one custom AdaCoFSynthesis node (TensorRT plugin / ORT custom op, default); "
                        "onnx: standard ONNX ops only; both: plugin form to OUT and onnx form to OUT .std.onnx")
    p.add_argument("--variant", default=None, help="override the detected variant")
    p.add_argument("--kernel-size", type=cli_args.positive_int, default=None, help="override the detected kernel size")
    p.add_argument("--dilation", type=cli_args.positive_int, default=None, help="override the dilation (default: config.txt or 1)")
    p.add_argument("--opset", type=cli_args.int_range(MIN_OPSET, MAX_OPSET), default=DEFAULT_OPSET, help=f"ONNX opset ({MIN_OPSET}..{MAX_OPSET}, "
                                                                    f"default {DEFAULT_OPSET})")
    p.add_argument("--exporter", choices=("auto", "dynamo", "torchscript"), default="auto",
                   help="torch.onnx exporter (auto: torchscript + onnxscript's optimizer, ~5x faster than dynamo for "
                        "the same computing graph; dynamo where torch lacks the TorchScript exporter)")
    p.add_argument("--json", action="store_true", help="print the export summary as JSON")
    return p


def _default_output(ckpt_path: Path) -> Path:
    return Path.cwd() / (ckpt_path.stem + ".onnx")


def export_checkpoint(checkpoint: Path | None, output: Path | None = None, synthesis: str = "plugin",
                      variant: str | None = None, kernel_size: int | None = None, dilation: int | None = None,
                      opset: int = DEFAULT_OPSET, exporter: str = "auto") -> list:
    """Load (UserError on a bad checkpoint) and export; returns one export.core.ExportInfo per written file."""
    from .core import export_model  # here: torch and onnx load after parsing (--help answers at once)

    from sfadacof.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint

    ckpt = Path(checkpoint) if checkpoint is not None else DEFAULT_CHECKPOINT
    out = Path(output) if output is not None else _default_output(ckpt)
    form, also = synthesis, {}
    if synthesis == "both":
        form, also = "plugin", {"onnx": standard_form_path(out)}
    # before loading anything: the checkpoint (and its config.txt) must survive any -o
    check_outputs([ckpt, ckpt.parent / "config.txt"],
                  [output_file("-o", out)] + [output_file("-o (.std.onnx)", p) for p in also.values()])
    loaded = load_checkpoint(checkpoint, variant=variant, kernel_size=kernel_size, dilation=dilation)
    try:
        return export_model(loaded.model, out, synthesis=form, exporter=exporter, opset=opset,
                            checkpoint_sha256=loaded.sha256, checkpoint_name=loaded.path.name, epoch=loaded.epoch,
                            also=also)
    except ValueError as e:  # option combinations export_model rejects (opset range, exporter availability, K/d)
        raise UserError(f"{loaded.path}: {e}") from None
    except OSError as e:  # a failed write (full disk, I/O error): exit 1 naming the output, not a user error
        raise OSError(e.errno, f"cannot write ({e.strerror or e})", str(out)) from None


@cli_command(build_parser)
def main(args: argparse.Namespace) -> int:
    infos = export_checkpoint(args.checkpoint, args.output, args.synthesis, args.variant, args.kernel_size,
                              args.dilation, args.opset, args.exporter)
    summary = []
    for info in infos:
        row = {"path": str(info.path), "synthesis": info.synthesis, "exporter": info.exporter, "opset": info.opset,
               "seconds": round(info.seconds, 2), "size_mb": round(info.size_bytes / 2**20, 2), "nodes": info.nodes,
               "variant": info.metadata["variant"], "kernel_size": info.metadata["kernel_size"],
               "dilation": info.metadata["dilation"], "checkpoint_sha256": info.metadata["checkpoint_sha256"]}
        summary.append(row)
        if not args.json:
            print(f"wrote {info.path} ({info.synthesis} synthesis, {info.metadata['variant']} "
                  f"K={info.metadata['kernel_size']} d={info.metadata['dilation']}, {info.exporter} exporter, opset "
                  f"{info.opset}, {row['size_mb']} MB, {info.nodes} nodes, {info.seconds:.1f} s)")
    if args.json:
        print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
