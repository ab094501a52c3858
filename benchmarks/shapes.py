"""Graph-shape experiments: which ONNX layout of the factored STFT runs fastest in ONNX Runtime / OpenVINO.

    python benchmarks/shapes.py [--n-fft 400 512 1024 2048 4096] [--seconds 10] [--threads 1] [--no-openvino]

Prototypes (power spectrogram, built from the library's own factored bases, checked against it):

* ``lib:dense`` / ``lib:factored``: specrewrite as it is (store mode).
* ``cf:conv``: "channel-first" factored: grouped strided Conv (stage 1, unchanged), then a pure Reshape
  (B, 2*N2, N1*T) and ONE MatMul with the stage-2 matrix on the LEFT (2*K2, 2*N2) @ (B, 2*N2, N1*T) ->
  (B, 2, K2*N1, T) = bins in order, no 5-D Transpose at all; power from the two channel slices.
* ``cf:matmul``: same, but stage 1 as a batched MatMul (N2, 2*N1, N1) @ (B, N2, N1, T) on frames built with
  strided Slices + Concat instead of the grouped Conv.
* ``cf:conv:reduce``: cf:conv with the power as ReduceSum(z*z) over the channel axis.
* ``cf:<first>:n2=K``: the same graphs with another factorisation (N2 = K phases, N1 = N / K taps).

Also a micro-benchmark of the inverse's first-stage MatMul layouts (batched GEMV vs GEMM).
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
try:
    import specrewrite  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import candidates as C  # noqa: E402
import runtimes as R  # noqa: E402
import timing as T  # noqa: E402


class ChannelFirstFactored(torch.nn.Module):
    """Power spectrogram, factored N = N1*N2, with no Transpose between the two DFT stages."""

    def __init__(self, n_fft: int, hop: int, first: str = "conv", power: str = "slices", n2: int | None = None):
        super().__init__()
        import specrewrite as sr
        from specrewrite.kernels import NP, FactorPlan, analysis_factored

        lib = sr.Spectrogram(n_fft, hop_length=hop, power=None, mode="store", strategy="factored")
        st = lib.stft
        p = st.plan
        w1 = st.dft_stage1.detach().clone()                                   # (N2*2*N1, 1, N1)
        w2 = st.dft_stage2.detach().clone()                                   # (2*N2, 2*K2) rows (c, n2)
        if n2 is not None and n2 != p.n2:                                     # another factorisation
            n1 = n_fft // n2
            p = FactorPlan(n1, n2, min(n2, -(-(n_fft // 2 + 1) // n1)))
            a, b = analysis_factored(NP, p, st.spec.padded_window(), 1.0)
            w1 = torch.as_tensor(a, dtype=torch.float32).unsqueeze(1)
            w2 = torch.as_tensor(b, dtype=torch.float32)
        self.n_fft, self.hop, self.n1, self.n2, self.k2 = n_fft, hop, p.n1, p.n2, p.k2
        self.n_bins, self.first, self.power = n_fft // 2 + 1, first, power
        w2 = w2.reshape(2, p.n2, 2 * p.k2).permute(1, 0, 2).reshape(2 * p.n2, 2 * p.k2)   # rows (n2, c)
        self.register_buffer("w2l", w2.t().contiguous())                     # (2*K2, 2*N2)
        if first == "conv":
            self.register_buffer("w1", w1)
        else:
            self.register_buffer("w1", w1.reshape(p.n2, 2 * p.n1, p.n1).contiguous())

    def forward(self, x):
        n, hop, n1, n2, k2 = self.n_fft, self.hop, self.n1, self.n2, self.k2
        x = F.pad(x.reshape(-1, 1, x.shape[-1]), (n // 2, n // 2), mode="reflect")
        t = (x.shape[-1] - n) // hop + 1
        x = x[..., : (t - 1) * hop + n]
        b, s = x.shape[0], hop // n2
        phases = x.reshape(b, -1, n2).transpose(1, 2)                          # (B, N2, L/N2)
        if self.first == "conv":
            y = F.conv1d(phases, self.w1, stride=s, groups=n2)                 # (B, N2*2*N1, T)
        else:
            g = math.gcd(s, n1)
            step = s // g
            blocks = phases.reshape(b, n2, -1, g).transpose(2, 3)              # (B, N2, g, L/(N2 g))
            taps = [blocks[..., q: q + (t - 1) * step + 1: step] for q in range(n1 // g)]
            y = torch.matmul(self.w1, torch.cat(taps, dim=2))                  # (B, N2, 2*N1, T)
        z = torch.matmul(self.w2l, y.reshape(b, 2 * n2, n1 * t))               # (B, 2*K2, N1*T)
        z = z.reshape(b, 2, k2 * n1, t)[:, :, : self.n_bins]                   # (B, 2, F, T)
        if self.power == "reduce":
            return (z * z).sum(1)
        return z[:, 0] * z[:, 0] + z[:, 1] * z[:, 1]


def variants(n_fft, hop):
    native = C.native_module("power", n_fft, hop)
    out = {"native": (native, [])}
    for strat in ("dense", "factored"):
        m, bases = C.rewritten_module("power", n_fft, hop, strat, "store", native)
        out[f"lib:{strat}"] = (m, bases)
    out["cf:conv"] = (ChannelFirstFactored(n_fft, hop, "conv").eval(), [])
    out["cf:matmul"] = (ChannelFirstFactored(n_fft, hop, "matmul").eval(), [])
    out["cf:conv:reduce"] = (ChannelFirstFactored(n_fft, hop, "conv", "reduce").eval(), [])
    for n2 in ALT_N2.get(n_fft, ()):
        out[f"cf:conv:n2={n2}"] = (ChannelFirstFactored(n_fft, hop, "conv", n2=n2).eval(), [])
        out[f"cf:matmul:n2={n2}"] = (ChannelFirstFactored(n_fft, hop, "matmul", n2=n2).eval(), [])
    return out


ALT_N2 = {1024: (32,), 2048: (32, 64), 4096: (64,)}   # factorisations other than the library's choice


def bench_power(n_fft, hop, seconds, threads, runtimes, workdir, budget, max_reps):
    x = C.signal("power", n_fft, hop, seconds)
    ref = C.reference("power", n_fft, hop, x)
    files, rows = {}, {}
    for name, (m, bases) in variants(n_fft, hop).items():
        with torch.no_grad():
            y = m(x, *bases)
        err = float(np.abs(y.double().numpy() - ref).max() / np.abs(ref).max())
        p = os.path.join(workdir, f"shape_{n_fft}_{name.replace(':', '_')}.onnx")
        info = C.export(m, (x,) + tuple(bases), p)
        if "error" in info:
            print(f"  {name}: {info['error']}")
            continue
        files[name] = (p, [x.numpy()] + [b.numpy() for b in bases])
        rows[name] = {"eager_err": err, "ops": len(info["ops"]), "size_kB": info["size"] / 1e3}
    for t in threads:
        for rt in runtimes:
            runners = {k: R.make_runner(rt, p, t, arrs) for k, (p, arrs) in files.items()}
            for k, r in runners.items():
                rows[k][f"{rt}/{t}t err"] = R.rel_error(r(), ref)
            for k, v in T.interleaved(runners, budget, 3, max_reps).items():
                rows[k][f"{rt}/{t}t"] = v.get("median_ms")
    return rows


def _matmul_model(path, a_shape, b_shape):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal(b_shape).astype(np.float32), "W")
    g = helper.make_graph([helper.make_node("MatMul", ["A", "W"], ["Y"])], "mm",
                          [helper.make_tensor_value_info("A", TensorProto.FLOAT, list(a_shape))],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), path)


def istft_matmul_micro(n1, n2, frames, threads, runtimes, workdir, budget, max_reps):
    """The inverse's stage A: (B, T, N2, 1, 2N1) @ (N2, 2N1, 2N1) (today) vs (B, N2, T, 2N1) @ (N2, 2N1, 2N1)."""
    rng = np.random.default_rng(1)
    shapes = {"gemv (1,T,N2,1,2N1)": ((1, frames, n2, 1, 2 * n1), (n2, 2 * n1, 2 * n1)),
              "gemm (1,N2,T,2N1)": ((1, n2, frames, 2 * n1), (n2, 2 * n1, 2 * n1))}
    res = {}
    for t in threads:
        for rt in runtimes:
            runners = {}
            for name, (a, w) in shapes.items():
                p = os.path.join(workdir, f"mm_{n1}_{n2}_{name.split()[0]}.onnx")
                _matmul_model(p, a, w)
                runners[name] = R.make_runner(rt, p, t, [rng.standard_normal(a).astype(np.float32)])
            for k, v in T.interleaved(runners, budget, 3, max_reps).items():
                res.setdefault(k, {})[f"{rt}/{t}t"] = v.get("median_ms")
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-fft", type=int, nargs="+", default=[400, 512, 1024, 2048, 4096])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--no-openvino", action="store_true")
    ap.add_argument("--budget", type=float, default=0.4)
    ap.add_argument("--max-reps", type=int, default=30)
    a = ap.parse_args(argv)
    R.ORT_SPIN = False
    hops = {400: 160, 512: 128, 1024: 256, 2048: 512, 4096: 1024}
    runtimes = ["ort"] + ([] if a.no_openvino or R.openvino_available() else ["openvino"])
    workdir = tempfile.mkdtemp(prefix="specrewrite-shapes-")
    try:
        run_all(a, runtimes, hops, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_all(a, runtimes, hops, workdir):
    for n_fft in a.n_fft:
        hop = hops.get(n_fft, n_fft // 4)
        rows = bench_power(n_fft, hop, a.seconds, a.threads, runtimes, workdir, a.budget, a.max_reps)
        cols = [f"{rt}/{t}t" for t in a.threads for rt in runtimes]
        print(f"\npower n_fft {n_fft} hop {hop}, {a.seconds:g} s (median ms; error vs float64 / peak)")
        print(f"  {'variant':16s} " + " ".join(f"{c:>12s}" for c in cols) + "   ORT err   eager err  ops  kB")
        for k, r in rows.items():
            print(f"  {k:16s} " + " ".join(f"{(r.get(c) or float('nan')):12.2f}" for c in cols)
                  + f"   {r.get(cols[0] + ' err', float('nan')):.1e}   {r['eager_err']:.1e}   {r['ops']:3d} "
                    f"{r['size_kB']:.0f}")
    for n1, n2, frames in ((64, 8, 1251), (128, 32, 157)):
        res = istft_matmul_micro(n1, n2, frames, a.threads, runtimes, workdir, a.budget, a.max_reps)
        print(f"\ninverse stage-A MatMul, N1={n1} N2={n2} T={frames} (median ms)")
        for k, r in res.items():
            print(f"  {k:22s} " + " ".join(f"{c} {v:.2f}" for c, v in r.items()))


if __name__ == "__main__":
    main()
