"""The torch emitter: real-valued nn.Modules for stft / istft / fft built from the pure kernels."""
