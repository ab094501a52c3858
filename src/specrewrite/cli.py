"""Command line.

    specrewrite demo                                   the built-in example (rewrite, ONNX, ONNX Runtime)
    specrewrite export MODEL OUT --shape 2,16000       rewrite MODEL, write OUT (.onnx / .mlpackage), verify it
    specrewrite inspect MODEL --shape 2,16000          what rewrite finds and does, without writing anything
    specrewrite --version

MODEL is ``package.module:name`` or ``path/to/file.py:name``, where ``name`` is an ``nn.Module`` instance, a
class or a function returning one (called without arguments, or with ``--kwargs '{"n_fft": 512}'``). Each
``--shape`` gives one example input (float32 noise at 0.1 of full scale, or ``--dtype``). The model is put in
eval mode. Exit status: 0 when the result is verified, 1 when it is not, 2 on an error (its message says why).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys


def _load(spec: str, kwargs: dict):
    import torch

    from .errors import SpecRewriteError

    if ":" not in spec:
        raise SpecRewriteError(f"model {spec!r} is not of the form module:name or file.py:name",
                               fix="e.g. mypkg.models:build_model or ./model.py:Net")
    where, name = spec.rsplit(":", 1)
    if where.endswith(".py") or os.sep in where:
        if not os.path.isfile(where):
            raise SpecRewriteError(f"no file {where!r}", fix="give the path of the Python file that defines the model")
        sys.path.insert(0, os.path.dirname(os.path.abspath(where)))
        mod_spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(where))[0], where)
        mod = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(mod)
    else:
        try:
            mod = importlib.import_module(where)
        except ImportError as e:
            raise SpecRewriteError(f"cannot import {where!r}: {e}", fix="install the package, or give a file path") \
                from e
    obj = mod
    for part in name.split("."):
        if not hasattr(obj, part):
            raise SpecRewriteError(f"{where!r} has no {name!r}", fix="name a module instance, class or factory")
        obj = getattr(obj, part)
    model = obj if isinstance(obj, torch.nn.Module) else obj(**kwargs)
    if not isinstance(model, torch.nn.Module):
        raise SpecRewriteError(f"{spec} gave a {type(model).__name__}, not an nn.Module",
                               fix="name a module instance, a module class or a function returning one")
    return model.eval()


def _inputs(shapes, dtype: str):
    import torch

    from .errors import SpecRewriteError

    if not shapes:
        raise SpecRewriteError("no example input shape given", fix="pass --shape 2,16000 (once per model input)")
    g = torch.Generator().manual_seed(0)
    out = []
    for s in shapes:
        try:
            shape = [int(d) for d in s.replace("x", ",").split(",") if d.strip()]
        except ValueError:
            raise SpecRewriteError(f"--shape {s!r} is not a list of sizes", fix="e.g. --shape 2,16000") from None
        dt = getattr(torch, dtype, None)
        if not isinstance(dt, torch.dtype):
            raise SpecRewriteError(f"--dtype {dtype!r} is not a torch dtype", fix="e.g. --dtype float32")
        if dt.is_floating_point:
            out.append((torch.randn(shape, generator=g, dtype=torch.float64) * 0.1).to(dt))
        else:
            out.append(torch.randint(0, 100, shape, generator=g).to(dt))
    return tuple(out)


def _common(p):
    p.add_argument("model", help="module:name or file.py:name (an nn.Module, a class or a factory)")
    p.add_argument("--shape", action="append", default=[], help="an example input's shape, e.g. 2,16000 "
                   "(repeat per input)")
    p.add_argument("--dtype", default="float32", help="example inputs' dtype (default float32)")
    p.add_argument("--kwargs", default="{}", help="JSON keyword arguments for a class or factory")
    p.add_argument("--mode", default="store", help="store | on_the_fly | input")
    p.add_argument("--strategy", default="auto", help="auto | dense | factored")
    p.add_argument("--static", action="store_true", help="fix every input shape to the example's")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="specrewrite", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--version", action="store_true", help="print the version")
    sub = p.add_subparsers(dest="cmd")
    sub.add_parser("demo", help="rewrite + export a small audio classifier and run it in ONNX Runtime")
    ex = sub.add_parser("export", help="rewrite a model and write a verified .onnx / .mlpackage file")
    _common(ex)
    ex.add_argument("out", help="the file to write: .onnx, .mlpackage or .mlmodel")
    ex.add_argument("--precision", default="fp32", help="fp32 | fp16 (Core ML)")
    ex.add_argument("--no-verify", action="store_true", help="do not run the file in the installed runtimes")
    ins = sub.add_parser("inspect", help="print what rewrite finds and does (nothing is written)")
    _common(ins)
    args = p.parse_args(argv)
    if args.version:
        from . import __version__

        print(__version__)
        return 0
    if args.cmd == "demo":
        from .demo import main as demo

        return demo([])
    if args.cmd in ("export", "inspect"):
        return _run(args)
    p.print_help()
    return 0


def _run(args) -> int:
    from .errors import SpecRewriteError

    try:
        model = _load(args.model, json.loads(args.kwargs))
        inputs = _inputs(args.shape, args.dtype)
        dyn = False if args.static else None
        if args.cmd == "inspect":
            from .rewrite import rewrite

            out = rewrite(model, inputs, mode=args.mode, strategy=args.strategy, dynamic_shapes=dyn, strict=False)
            print(out.specrewrite_report)
            return 0
        from .export import export

        result = export(model, inputs, args.out, mode=args.mode, strategy=args.strategy, dynamic_shapes=dyn,
                        precision=args.precision, verify=not args.no_verify, strict=False)
        print(result.report)
        print(result)
        return 0 if result.ok else 1
    except SpecRewriteError as e:
        print(f"specrewrite: error: {e}", file=sys.stderr)
        return 2
    except json.JSONDecodeError as e:
        print(f"specrewrite: error: --kwargs is not JSON ({e})", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
