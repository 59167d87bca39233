"""Media plumbing: video decoding and encoding with sound (PyAV), images, and the one place
uint8 images become float tensors and back."""
