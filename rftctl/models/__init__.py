"""Building, loading, converting and warm-starting the policy and its tokenizer."""
