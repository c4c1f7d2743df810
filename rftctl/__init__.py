"""rftctl: reinforcement fine-tuning experiments on verifiable math, with entropy control.

Reproduces "On the Entropy Dynamics in Reinforcement Fine-Tuning of Large Language Models"
(arXiv 2602.03392). Importing this package is cheap: torch and vLLM load only where used.
"""

__version__ = "0.1.0"
