"""Quantization kernels and the per-tensor type policy.

numpy/torch only: this package imports nothing else of ours.
"""
