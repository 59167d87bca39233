"""Inference: the face cropper, the few-shot stage (fitting), the `Avatar` wrapper that owns
devices and pre/post-processing, driving motion, rendering to video, and the ONNX runtime."""
