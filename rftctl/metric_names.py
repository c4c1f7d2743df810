"""The names of the step log's columns (data/runs/<run>/seed<k>/train_log.tsv), defined once.

Both train engines write these names (the rftctl engine through rftctl/rl/step_metrics.py and
rftctl/rl/trainer.py, the TRL engine through rftctl/rl/trl_engine.py) and the readers use them:
the cell's summary (rftctl/rl/cell.py), the report's tables and figures (rftctl/report/). A
column every engine must write is in :data:`REQUIRED`; tests/test_step_log.py runs both engines
and checks their logs against it. docs/metrics.md says what each one measures.
"""

STEP = "step"
REWARD = "train/reward_mean"
RESPONSE_LENGTH = "train/response_length"
ENTROPY = "train/entropy"
S_MEAN = "entropy/s_mean"
S_MINUS_N = "entropy/s_minus_n_mean"
LOSS = "train/loss"
GRAD_NORM = "train/grad_norm"
KEPT_TOKENS = "train/kept_tokens"
SOLVED_GROUPS = "train/solved_groups"
MIXED_GROUPS = "train/mixed_groups"
PARSE_FAILURES = "grader/parse_failures"
TIMEOUTS = "grader/timeouts"
LOGPROB_GAP = "rollout/logprob_gap"
TIS_WEIGHT = "tis/weight_mean"
TIS_CAPPED = "tis/capped_frac"
CLIP_FRAC = "clip/frac"
CLIP_FRAC_POS = "clip/frac_pos"
CLIP_FRAC_NEG = "clip/frac_neg"
STEP_TIME = "time/step_s"
ROLLOUT_TIME = "time/rollout_s"

# what the summary, the report and the curves read: every engine writes these on every step
# (clip/frac: a method without a mask logs 0)
REQUIRED = (
    STEP,
    REWARD,
    RESPONSE_LENGTH,
    ENTROPY,
    S_MEAN,
    S_MINUS_N,
    LOSS,
    GRAD_NORM,
    KEPT_TOKENS,
    PARSE_FAILURES,
    TIMEOUTS,
    STEP_TIME,
)
