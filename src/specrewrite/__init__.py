"""specrewrite: make the spectral ops of any PyTorch audio model deployable (ONNX, Core ML, ...)."""
from .errors import SpecRewriteError
from .functional import fft, ifft, irfft, istft, rfft, stft
from .modes import Mode, Strategy
from .modules import LFCC, MFCC, InverseSpectrogram, MelSpectrogram, Spectrogram
from .specs import IstftSpec, StftSpec
from .rewrite import Report, inspect, rewrite
from .export import ExportResult, export, export_many
from ._torch.fft import RealFFT
from ._torch.istft import RealISTFT
from ._torch.stft import RealSTFT

__version__ = "0.1.0"

__all__ = ["rewrite", "inspect", "Report", "export", "export_many", "ExportResult", "SpecRewriteError", "Mode",
           "Strategy", "StftSpec", "IstftSpec", "stft", "istft", "rfft", "irfft", "fft", "ifft", "Spectrogram",
           "MelSpectrogram", "MFCC", "LFCC", "InverseSpectrogram", "RealSTFT", "RealISTFT", "RealFFT"]
