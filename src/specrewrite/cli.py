"""Command line.

    specrewrite demo                                        the built-in example (rewrite, ONNX, ONNX Runtime)
    specrewrite export MODEL --to onnx,coreml,tflite,pte    rewrite once, write and verify one file per target
    specrewrite export MODEL model.onnx                     one file, the target from its suffix
    specrewrite inspect MODEL                               what rewrite finds and does, nothing written
    specrewrite --version

MODEL is ``package.module:name`` or ``path/to/file.py:name``, where ``name`` is an ``nn.Module`` instance, a
class, or a function returning a module or ``(module, example_inputs)`` (called without arguments, or with
``--kwargs '{"n_fft": 512}'``). Without example inputs from the factory, each ``--shape`` gives one (float32
noise at 0.1 of full scale, or ``--dtype``). The model is put in eval mode. Files go to ``--out DIR`` (default
the current folder) as ``<name>.onnx`` / ``.mlpackage`` / ``.tflite`` / ``.pte``. Progress goes to stderr,
the summary table (or ``--json``) to stdout. Exit status: 0 when every file is verified, 1 when one is not, 2
on an error (its message says why).
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
    inputs = None
    if isinstance(model, tuple) and len(model) == 2 and isinstance(model[0], torch.nn.Module):
        model, inputs = model
        inputs = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
    if not isinstance(model, torch.nn.Module):
        raise SpecRewriteError(f"{spec} gave a {type(model).__name__}, not an nn.Module",
                               fix="name a module instance, a module class or a function returning one (or "
                               "(module, example_inputs))")
    return model.eval(), inputs, name.split(".")[-1]


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
    p.add_argument("--dynamic", default=None, help="axes kept dynamic, named by role: batch,time (the default: "
                   "every batch and time axis the model allows), batch, time, or none")
    p.add_argument("--static", action="store_true", help="fix every input shape to the example's (--dynamic none)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="specrewrite", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--version", action="store_true", help="print the version")
    sub = p.add_subparsers(dest="cmd")
    sub.add_parser("demo", help="rewrite + export a small audio classifier and run it in ONNX Runtime")
    ex = sub.add_parser("export", help="rewrite a model and write verified .onnx / .mlpackage / .tflite / .pte "
                        "files")
    _common(ex)
    ex.add_argument("file", nargs="?", help="one file to write (the target from its suffix)")
    ex.add_argument("--to", default="onnx", help="targets, comma-separated: onnx,coreml,tflite,pte (default onnx)")
    ex.add_argument("--out", default=".", help="folder for the files of --to (default: the current folder)")
    ex.add_argument("--precision", default="fp32", help="fp32 | fp16 (Core ML)")
    ex.add_argument("--no-verify", action="store_true", help="do not run the files in their runtimes")
    ex.add_argument("--json", action="store_true", help="print the results as JSON")
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


def _dynamic_request(roles, inputs, static: bool):
    """``--dynamic batch,time`` as torch.export's dynamic_shapes: each input's axes of those roles (axis 0 is the
    batch; the time axis as ``rewrite`` finds it), an explicit request (an error when the model pins one)."""
    from .errors import SpecRewriteError

    if static or (roles or "").strip().lower() == "none":
        return False
    if roles is None:
        return None
    want = {r.strip().lower() for r in roles.split(",") if r.strip()}
    if not want or want - {"batch", "time"}:
        raise SpecRewriteError(f"--dynamic {roles!r}: the roles are batch and time", op="specrewrite",
                               fix="e.g. --dynamic batch,time, --dynamic time or --dynamic none")
    import torch

    from .rewrite.dynamic import role_of

    spec = []
    for i, a in enumerate(inputs):
        roles = [role_of(a, d, inputs) for d in range(a.dim())] if isinstance(a, torch.Tensor) else []
        axes = {d: torch.export.Dim(f"in{i}_{r}") for d, r in enumerate(roles) if r in want}
        spec.append(axes or None)
    return tuple(spec)


_SUFFIX = {"onnx": ".onnx", "coreml": ".mlpackage", "tflite": ".tflite", "pte": ".pte"}


def _run(args) -> int:
    import time

    from .errors import SpecRewriteError

    t0 = time.perf_counter()

    def progress(msg):
        print(f"[{time.perf_counter() - t0:6.1f} s] {msg}", file=sys.stderr, flush=True)

    try:
        progress(f"load {args.model}")
        model, inputs, name = _load(args.model, json.loads(args.kwargs))
        if inputs is None or args.shape:
            inputs = _inputs(args.shape, args.dtype)
        dyn = _dynamic_request(args.dynamic, inputs, args.static)
        if args.cmd == "inspect":
            from .rewrite import rewrite

            progress("rewrite")
            out = rewrite(model, inputs, mode=args.mode, strategy=args.strategy, dynamic_shapes=dyn, strict=False)
            print(out.specrewrite_report)
            return 0
        from .export import export_many

        if args.file:
            paths = [args.file]
        else:
            targets = [t.strip().lower() for t in args.to.split(",") if t.strip()]
            unknown = [t for t in targets if t not in _SUFFIX]
            if unknown:
                raise SpecRewriteError(f"--to names unknown targets {unknown}", fix=f"use {','.join(_SUFFIX)}")
            os.makedirs(args.out, exist_ok=True)
            paths = [os.path.join(args.out, name + _SUFFIX[t]) for t in targets]
        results = export_many(model, inputs, paths, mode=args.mode, strategy=args.strategy, dynamic_shapes=dyn,
                              precision=args.precision, verify=not args.no_verify, strict=False,
                              progress=progress)
        progress("done")
        if args.json:
            print(json.dumps([r.to_dict() for r in results], indent=2, default=str))
        else:
            print(results[0].report)
            print(_table(results))
        return 0 if all(r.ok for r in results) else 1
    except SpecRewriteError as e:
        print(f"specrewrite: error: {e}", file=sys.stderr)
        return 2
    except json.JSONDecodeError as e:
        print(f"specrewrite: error: --kwargs is not JSON ({e})", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - e.g. the user's factory raising: an error (2), not "not verified" (1)
        text = str(e).strip().splitlines()
        print(f"specrewrite: error: {type(e).__name__}: {text[0] if text else ''}", file=sys.stderr)
        return 2


def _table(results) -> str:
    rows = [("target", "file", "size", "max error", "dynamic axes", "status")]
    for r in results:
        err = "-" if r.max_rel_err is None else f"{r.max_rel_err:.1e}"
        rows.append((r.target, r.path, f"{r.size_bytes / 1024:.0f} kB", err, ", ".join(r.dynamic_axes) or "none",
                     "verified" if r.ok and r.checks else ("written" if r.ok else "FAILED")))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"{r.target}: {n}" for r in results for n in r.notes if "predicts on macOS only" not in n]
    return "\n".join(lines + [""] + notes)

if __name__ == "__main__":
    sys.exit(main())
