"""What rewrite() found, what replaced it, and what it skipped."""
from __future__ import annotations

import dataclasses
import textwrap
from typing import Any, Dict, List, Optional


@dataclasses.dataclass
class Entry:
    op: str
    where: Optional[str]
    params: Dict[str, Any]
    replaced_by: Optional[str] = None
    skipped: Optional[str] = None


@dataclasses.dataclass
class Report:
    capture: str = "none"
    shapes_specialised: bool = False
    entries: List[Entry] = dataclasses.field(default_factory=list)
    complex_ops: Dict[str, int] = dataclasses.field(default_factory=dict)
    notes: List[str] = dataclasses.field(default_factory=list)
    folded: Dict[str, int] = dataclasses.field(default_factory=dict)
    max_rel_err: Optional[float] = None
    axes: List[Dict[str, Any]] = dataclasses.field(default_factory=list)   # per input axis, see dynamic.Axis
    second_shape: Optional[str] = None
    max_rel_err_second: Optional[float] = None
    seconds: Optional[float] = None

    def axis(self, input: str, role: str) -> Optional[Dict[str, Any]]:
        """The report of input ``input``'s ``role`` axis ('batch' / 'time'), or None."""
        for a in self.axes:
            if a["input"] == input and a["role"] == role:
                return a
        return None

    @property
    def time_axes_dynamic(self) -> bool:
        """Every input's time axis stayed dynamic."""
        times = [a for a in self.axes if a["role"] == "time"]
        return bool(times) and all(a["dynamic"] for a in times)

    @property
    def found(self) -> List[Entry]:
        return self.entries

    @property
    def replaced(self) -> List[Entry]:
        return [e for e in self.entries if e.replaced_by]

    @property
    def skipped(self) -> List[Entry]:
        return [e for e in self.entries if e.skipped]

    def add(self, op, where, params, replaced_by=None, skipped=None) -> Entry:
        e = Entry(op, where, dict(params), replaced_by, skipped)
        self.entries.append(e)
        return e

    def forget_lowering(self, keep_entries: int) -> None:
        """Drop what a lowering attempt recorded (its entries past ``keep_entries``, complex ops, folds) before
        the graph is captured again."""
        del self.entries[keep_entries:]
        self.complex_ops.clear()
        self.folded.clear()

    def count_complex(self, op_name: str) -> None:
        self.complex_ops[op_name] = self.complex_ops.get(op_name, 0) + 1

    def _groups(self):
        """Entries with the same op, parameters and replacement (a model with 32 identical STFT / iSTFT pairs)
        as one line each, in first-seen order."""
        groups: Dict[Any, List[Entry]] = {}
        for e in self.entries:
            key = (e.op, repr(sorted(e.params.items())), (e.replaced_by or "").split(": ", 1)[-1], e.skipped)
            groups.setdefault(key, []).append(e)
        return [(g[0], g) for g in groups.values()]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        lines = [f"specrewrite report: capture={self.capture}"
                 + (" (every input shape fixed to the example's)" if self.shapes_specialised else "")]
        if not self.entries and not self.complex_ops and not self.folded:
            lines.append("  no spectral op found: the model is returned unchanged (as a copy)")
        for i, (e, group) in enumerate(self._groups()):
            params = ", ".join(f"{k}={v}" for k, v in e.params.items())
            lines.append(f"  [{i}] " + (f"{len(group)} x " if len(group) > 1 else "") + f"{e.op}({params})")
            places = list(dict.fromkeys(g.where for g in group if g.where))
            for w in places[:3]:
                lines.append(f"      at {w}")
            if len(places) > 3:
                lines.append(f"      ... and {len(places) - 3} more places")
            if e.replaced_by:
                names = [g.replaced_by.split(": ", 1)[0] for g in group if ": " in g.replaced_by]
                what = e.replaced_by.split(": ", 1)[-1]
                more = ", ..." if len(names) > 4 else ""
                lines.append(f"      -> {what}" + (f" ({', '.join(names[:4])}{more})" if names else ""))
            else:
                lines.append(f"      skipped: {e.skipped}")
        if self.complex_ops:
            ops = ", ".join(f"{k} x{v}" for k, v in sorted(self.complex_ops.items()))
            lines.append(f"  complex ops lowered to real pairs: {ops}")
        if self.folded:
            ops = ", ".join(f"{k} x{v}" for k, v in sorted(self.folded.items()))
            lines.append(f"  input-independent values computed in forward, folded into constants: {ops}")
        for a in self.axes:
            lines.append(f"  {a['text']}")
        for n in self.notes:
            lines.append(f"  note: {n}")
        if self.max_rel_err is not None:
            lines.append(f"  verified on the example inputs: max error {self.max_rel_err:.2e} of the output peak")
        if self.max_rel_err_second is not None:
            lines.append(f"  verified at a second shape {self.second_shape}: max error "
                         f"{self.max_rel_err_second:.2e} of the output peak")
        if self.seconds is not None:
            lines.append(f"  rewrite took {self.seconds:.2f} s")
        return "\n".join(_wrapped(ln) for ln in lines)


WIDTH = 110   # str(report) fits a terminal: longer lines continue, indented, on the next


def _wrapped(line: str) -> str:
    indent = " " * (len(line) - len(line.lstrip()))
    return textwrap.fill(line, WIDTH, subsequent_indent=indent + "    ", break_long_words=False,
                         break_on_hyphens=False)
