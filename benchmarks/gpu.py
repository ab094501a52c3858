"""The rewritten spectral graphs on a CUDA device, next to torch's own cuFFT path in the same run.

Not part of `make bench` (CI has no GPU): run by hand where a GPU exists, ``python benchmarks/gpu.py``. For each
configuration it rewrites a small model on the CPU, moves the rewritten module to the GPU, and reports:
* the float32 error against float64 eager on the CPU, next to eager float32 on the GPU (cuFFT) against the same
  reference (max and rms, relative to the output peak);
* the median latency of each (CUDA events, after warm-up), eager cuFFT and the rewritten graph, as a ratio.
Prints one JSON line per configuration and writes them to ``--out`` if given.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

import specrewrite as sr


class Power(torch.nn.Module):
    def __init__(self, n_fft, hop):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft, dtype=torch.float64))

    def forward(self, x):
        s = torch.stft(x, self.n_fft, self.hop, window=self.window.to(x.dtype), return_complex=True)
        return s.abs().pow(2)


class Resynth(torch.nn.Module):
    """stft -> soft mask -> istft (a separation / enhancement skeleton)."""

    def __init__(self, n_fft, hop):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft, dtype=torch.float64))

    def forward(self, x):
        w = self.window.to(x.dtype)
        s = torch.stft(x, self.n_fft, self.hop, window=w, return_complex=True)
        return torch.istft(s * torch.sigmoid(s.abs()), self.n_fft, self.hop, window=w, length=x.shape[-1])


class Spectrum(torch.nn.Module):
    def __init__(self, n):
        super().__init__()
        self.n = n

    def forward(self, x):
        return torch.view_as_real(torch.fft.rfft(x, n=self.n))


def _errors(got, ref):
    d = (got.double().cpu() - ref) / ref.abs().max()
    return float(d.abs().max()), float(d.pow(2).mean().sqrt())


def _latency_ms(fn, reps):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def run_case(name, model, x_cpu, reps):
    model = model.eval()
    t0 = time.perf_counter()
    fast = sr.rewrite(model, (x_cpu[:1],))
    rewrite_s = time.perf_counter() - t0
    with torch.no_grad():
        ref = model.double()(x_cpu.double())
        model.float()
        dev = torch.device("cuda")
        x = x_cpu.to(dev)
        eager_mod, fast_mod = model.to(dev), fast.to(dev)
        eager, got = eager_mod(x), fast_mod(x)
        row = {"case": name, "shape": list(x.shape), "rewrite_s": round(rewrite_s, 2)}
        row["eager_max"], row["eager_rms"] = _errors(eager, ref)
        row["rewritten_max"], row["rewritten_rms"] = _errors(got, ref)
        row["eager_ms"] = _latency_ms(lambda: eager_mod(x), reps)
        row["rewritten_ms"] = _latency_ms(lambda: fast_mod(x), reps)
    row["time_ratio"] = row["rewritten_ms"] / row["eager_ms"]
    row["rms_ratio"] = row["rewritten_rms"] / row["eager_rms"]
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    g = torch.Generator().manual_seed(0)
    cases = []
    for n_fft, hop, sr_hz in [(400, 160, 16000), (512, 128, 16000), (1024, 256, 44100), (2048, 512, 44100),
                              (4096, 1024, 44100), (1024, 441, 44100), (2048, 441, 44100)]:
        x = torch.randn(args.batch, 10 * sr_hz, generator=g)
        cases.append((f"power stft {n_fft}/{hop}", Power(n_fft, hop), x))
    for n_fft, hop in [(512, 128), (2048, 512)]:
        cases.append((f"stft-mask-istft {n_fft}/{hop}", Resynth(n_fft, hop), torch.randn(args.batch, 160000, generator=g)))
    for n in (4096, 16000):
        cases.append((f"rfft {n}", Spectrum(n), torch.randn(args.batch * 16, n, generator=g)))
    rows = []
    for name, model, x in cases:
        try:
            row = run_case(name, model, x, args.reps)
        except Exception as e:  # noqa: BLE001 - report and go on
            row = {"case": name, "error": f"{type(e).__name__}: {str(e)[:300]}"}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
