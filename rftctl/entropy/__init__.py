"""Entropy dynamics of GRPO (shared/docs/entropy-dynamics.md): token statistics (log p, H, S, N),
the paper's ClipB / ClipV masks, baseline entropy controls and the first-order theory.

This package __init__ imports nothing heavy: ``catalog`` is torch-free and imported by config.py;
import ``rftctl.entropy.stats`` / ``clip`` / ``methods`` explicitly for the torch parts.
"""
