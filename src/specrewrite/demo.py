"""The main job on a built-in example: `python -m specrewrite.demo` (what `make demo` runs).

A small keyword-spotting style classifier with a torchaudio MelSpectrogram front end (a log-mel + conv net, as
many deployed models have) is rewritten, exported to ONNX with a dynamic time axis, run in ONNX Runtime at two
lengths, and compared with eager PyTorch.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
import warnings

import torch


class TinyKWS(torch.nn.Module):
    """MelSpectrogram -> log -> two convs -> global pooling -> 12 classes."""

    def __init__(self, n_classes: int = 12):
        super().__init__()
        try:
            import torchaudio

            self.frontend = torchaudio.transforms.MelSpectrogram(16000, n_fft=512, hop_length=160, n_mels=40)
        except Exception:  # noqa: BLE001 - torchaudio is optional: use an equivalent torch.stft front end
            self.frontend = _StftMel()
        self.net = torch.nn.Sequential(
            torch.nn.Conv1d(40, 64, 5, padding=2), torch.nn.ReLU(),
            torch.nn.Conv1d(64, 64, 5, padding=2), torch.nn.ReLU())
        self.head = torch.nn.Linear(64, n_classes)

    def forward(self, wav):
        mel = torch.log(self.frontend(wav) + 1e-6)           # (B, 40, T)
        return self.head(self.net(mel).mean(dim=-1))


class _StftMel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        from .kernels import melscale_fbanks

        self.register_buffer("window", torch.hann_window(512))
        self.register_buffer("fb", torch.as_tensor(melscale_fbanks(257, 0.0, 8000.0, 40, 16000), dtype=torch.float32))

    def forward(self, wav):
        spec = torch.stft(wav, 512, 160, window=self.window, return_complex=True).abs() ** 2
        return torch.matmul(spec.transpose(-1, -2), self.fb).transpose(-1, -2)


def main(argv=None) -> int:
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("torch").setLevel(logging.ERROR)
    import specrewrite

    torch.manual_seed(0)
    model = TinyKWS().eval()
    wav = torch.randn(2, 16000) * 0.1                        # 2 clips of 1 s at 16 kHz
    print(f"model: {type(model).__name__} with front end {type(model.frontend).__module__}."
          f"{type(model.frontend).__name__}")
    t0 = time.perf_counter()
    fast = specrewrite.rewrite(model, (wav,))
    print(f"\n{fast.specrewrite_report}\n")
    print(f"rewrite: {time.perf_counter() - t0:.2f} s; the original model is untouched: "
          f"{type(model.frontend).__module__.split('.')[0]} front end still in place")

    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        print("onnxruntime is not installed: pip install 'specrewrite[onnx]' to run the ONNX part")
        return 0
    with tempfile.TemporaryDirectory(prefix="specrewrite-demo-") as folder:
        path = os.path.join(folder, "tiny_kws.onnx")
        t0 = time.perf_counter()
        result = specrewrite.export(model, (wav,), path, strict=False)
        print(f"\nspecrewrite.export: {time.perf_counter() - t0:.1f} s (the rewrite again, the ONNX export, and a "
              "run in each runtime installed)")
        print(result)
        worst = 0.0
        import onnxruntime as ort

        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        for seconds in (1.0, 2.5):
            x = torch.randn(2, int(16000 * seconds)) * 0.1
            with torch.no_grad():
                ref = model(x)
            got = torch.from_numpy(sess.run(None, {"wav": x.numpy()})[0])
            err = float((got - ref).abs().max() / ref.abs().max())
            worst = max(worst, err)
            print(f"ONNX Runtime vs eager on {seconds:.1f} s of audio: max error {err:.2e} of the output peak")
        print(f"\nthe file was {path} (in a temporary folder, removed now)")
    ok = worst < 1e-4 and result.ok
    print("OK" if ok else "MISMATCH")
    print("\nnext, on your own model (a module, class or factory; one --shape per input):\n"
          "  specrewrite export your_package.models:build_model --shape 1,16000 --to onnx,coreml,tflite,pte "
          "--out exported/")
    return 0 if ok else 1

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
