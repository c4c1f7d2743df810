"""Generation backends (transformers, vLLM) behind one protocol, plus the sample cache."""
