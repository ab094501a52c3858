"""What ``specrewrite.export`` hands back: the file, its size, the rewrite report and what each runtime measured."""
from __future__ import annotations

import dataclasses
from typing import List, Optional

from ..rewrite.report import Report


@dataclasses.dataclass
class RuntimeCheck:
    """One runtime run on the exported file, compared with eager PyTorch on the same inputs."""
    runtime: str                    # 'onnxruntime', 'onnx.reference', 'openvino', 'coreml (MIL evaluator, fp32)', ...
    shapes: str                     # the input shapes it ran at
    max_rel_err: Optional[float]    # max |file - eager| / max |eager| over the outputs (None: it did not run)
    ok: bool
    note: str = ""

    def __str__(self) -> str:
        err = "did not run" if self.max_rel_err is None else f"max error {self.max_rel_err:.2e} of the peak"
        return f"{self.runtime} at {self.shapes}: {err}" + (f" ({self.note})" if self.note else "") + \
            ("" if self.ok else "  FAILED")


@dataclasses.dataclass
class ExportResult:
    path: str
    target: str                     # 'onnx', 'coreml'
    size_bytes: int
    report: Report                  # the rewrite's report (what was replaced, dynamic axes, verification)
    input_names: List[str]
    dynamic_axes: List[str]         # 'wav axis 1 (time)' for every axis the file keeps dynamic
    op_types: List[str]             # the op types in the file
    spectral_ops_left: List[str]    # STFT / DFT / complex ops still in the file (empty: deployable anywhere)
    checks: List[RuntimeCheck] = dataclasses.field(default_factory=list)
    notes: List[str] = dataclasses.field(default_factory=list)
    seconds: Optional[float] = None   # writing and checking this file (the rewrite is in report.seconds)

    @property
    def ok(self) -> bool:
        return not self.spectral_ops_left and all(c.ok for c in self.checks)

    @property
    def max_rel_err(self) -> Optional[float]:
        errs = [c.max_rel_err for c in self.checks if c.max_rel_err is not None]
        return max(errs) if errs else None

    def to_dict(self) -> dict:
        """Everything but the report object, for JSON (the report as its text)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("report", "checks")}
        d.update(ok=self.ok, max_rel_err=self.max_rel_err, report=str(self.report),
                 checks=[dataclasses.asdict(c) for c in self.checks])
        return d

    def __str__(self) -> str:
        lines = [f"specrewrite export: {self.path} ({self.target}, {self.size_bytes / 1024:.0f} kB)",
                 f"  inputs: {', '.join(self.input_names)}; dynamic axes: "
                 + (", ".join(self.dynamic_axes) if self.dynamic_axes else "none"),
                 f"  op types ({len(self.op_types)}): {', '.join(self.op_types)}",
                 "  spectral / complex ops left: " + (", ".join(self.spectral_ops_left) or "none")]
        lines += [f"  {c}" for c in self.checks]
        lines += [f"  note: {n}" for n in self.notes]
        lines.append("  " + ("OK" if self.ok else "NOT VERIFIED"))
        return "\n".join(lines)
