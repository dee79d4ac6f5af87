"""What leaves the process: the fitted attributes, the safe model file and save/load, pickling,
Hugging Face and ONNX exports, and what files of earlier versions mean."""
