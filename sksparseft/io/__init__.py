"""What leaves the process: the fitted attributes, safe save/load, Hugging Face and ONNX exports,
atomic writes."""
