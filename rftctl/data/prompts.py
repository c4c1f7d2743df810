"""Prompt templates: how a problem's question becomes the text the policy continues.

"plain" needs no tokenizer (the tiny model is trained on exactly this form, with worked
solutions as completions); "chat" wraps the question in the tokenizer's chat template with the
instruction the paper's setting uses (Qwen2.5-Math style: reason step by step, answer in \\boxed{});
"bare" wraps the question alone, as the authors' released runs send it (Trinity-RFT's math
workflow with no system prompt and no reply prefix: the question is the only user turn, and the
chat template adds whatever it adds by itself, e.g. Qwen2.5's default system turn).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rftctl.errors import ConfigError
from rftctl.registry import Registry

BOXED_INSTRUCTION = "\nPlease reason step by step, and put your final answer within \\boxed{}."

TEMPLATES: Registry[Callable[[str, Any], str]] = Registry("prompt template")


@TEMPLATES.register(
    "plain", summary="Question: <q>\\nAnswer:  (no tokenizer; the tiny model's SFT format)"
)
def plain(question: str, tokenizer: Any = None) -> str:
    return f"Question: {question}\nAnswer:"


@TEMPLATES.register(
    "chat",
    summary="tokenizer chat template, user turn = question + 'put your final answer within "
    "\\boxed{}'",
)
def chat(question: str, tokenizer: Any) -> str:
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            "prepare.prompt_template: 'chat' needs a tokenizer with a chat template; "
            "use 'plain' for the tiny model"
        )
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": question + BOXED_INSTRUCTION}],
        add_generation_prompt=True,
        tokenize=False,
    )


@TEMPLATES.register(
    "bare",
    summary="tokenizer chat template, user turn = the question alone (the authors' released runs)",
)
def bare(question: str, tokenizer: Any) -> str:
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            "prepare.prompt_template: 'bare' needs a tokenizer with a chat template; "
            "use 'plain' for the tiny model"
        )
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, tokenize=False
    )


def render_prompt(template: str, question: str, tokenizer: Any = None) -> str:
    """Render ``question`` with the registered template ``template`` (unknown -> ConfigError)."""
    return TEMPLATES.get(template, key="prepare.prompt_template")(question, tokenizer)
