"""Command line: `specrewrite demo` runs the built-in example; `specrewrite --version`."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="specrewrite", description=__doc__)
    p.add_argument("--version", action="store_true", help="print the version")
    sub = p.add_subparsers(dest="cmd")
    sub.add_parser("demo", help="rewrite + export a small audio classifier and run it in ONNX Runtime")
    args = p.parse_args(argv)
    if args.version:
        from . import __version__

        print(__version__)
        return 0
    if args.cmd == "demo":
        from .demo import main as demo

        return demo([])
    p.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
