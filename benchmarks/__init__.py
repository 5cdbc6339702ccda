"""Benchmarks of jaxunlearn: the speed suite (``python -m benchmarks.suite``), the PyTorch
eager reference (``benchmarks/torch_reference.py``) and the seed-strategy probe."""
