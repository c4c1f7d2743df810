"""Evaluation: sampling n completions per problem, grading them, Avg@K / Pass@K."""

from rftctl.evaluation.metrics import default_ks, pass_at_k, summarize

__all__ = ["default_ks", "pass_at_k", "summarize"]
