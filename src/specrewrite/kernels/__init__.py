"""Pure kernels: DFT / iDFT bases, factored stages, FFT plans of any length (``fft_plan``), windows, mel and DCT matrices.

Everything here is computed in float64 (numpy) and has no backend import. Formulas are written once against a
tiny array namespace (``NP``) so the same code can also be emitted in-graph (``on_the_fly`` mode) by passing a
namespace that builds graph ops instead (see ``specrewrite._torch.bases``).
"""
from .dft import (CHUNK_TAPS, NP, FactorPlan, analysis_chunked, analysis_dense, analysis_factored, analysis_stage1, analysis_stage2, choose_plan, half_layout, half_stage2, dense_chunks, forced_plan,
                  framed_plan,
                  istft_plan, ola_shifts_ok, stft_layout, stft_plan, synthesis_conv_tables, synthesis_conv_weights, synthesis_groups, fft_matrix, ifft_real_matrix,
                  synthesis_dense, synthesis_factored_a, synthesis_factored_b)
from .fft_plan import (MAX_N, MAX_WEIGHT_BYTES, FFTPlan, chirp, chirp_at, chirp_filter,
                       chirp_filter_input, ct_constants, ct_shapes,
                       irfft_pre, plan_fft, rfft_post)
from .mel import create_dct, linear_fbanks, melscale_fbanks

__all__ = ["CHUNK_TAPS", "NP", "FactorPlan", "analysis_chunked", "analysis_dense", "analysis_factored", "analysis_stage1", "analysis_stage2", "choose_plan", "half_layout", "half_stage2", "dense_chunks", "framed_plan", "fft_matrix",
           "ifft_real_matrix", "synthesis_dense", "synthesis_factored_a", "synthesis_factored_b", "create_dct",
           "linear_fbanks", "melscale_fbanks", "MAX_N", "MAX_WEIGHT_BYTES", "FFTPlan", "chirp",
           "chirp_at", "chirp_filter", "chirp_filter_input", "ct_constants", "ct_shapes", "irfft_pre", "plan_fft", "rfft_post",
           "istft_plan", "stft_layout", "stft_plan", "ola_shifts_ok", "synthesis_conv_tables",
           "synthesis_conv_weights", "synthesis_groups"]
