"""Deployment: MKLDNN-fused fp32 inference and calibrated int8 quantization."""
