import pytest

from rftctl.data.prompts import BOXED_INSTRUCTION, TEMPLATES, render_prompt
from rftctl.errors import ConfigError


class FakeTok:
    chat_template = "x"

    def apply_chat_template(self, messages, add_generation_prompt, tokenize):
        assert add_generation_prompt and not tokenize
        return "<user>" + messages[0]["content"] + "</user><assistant>"


def test_plain_needs_no_tokenizer():
    assert render_prompt("plain", "What is 1 + 1?", None) == "Question: What is 1 + 1?\nAnswer:"


def test_chat_uses_template_and_boxed_instruction():
    out = render_prompt("chat", "Q?", FakeTok())
    assert out == "<user>Q?" + BOXED_INSTRUCTION + "</user><assistant>"
    assert "\\boxed{}" in out


def test_chat_without_tokenizer_and_unknown_template():
    with pytest.raises(ConfigError, match="chat"):
        render_prompt("chat", "Q?", None)
    with pytest.raises(ConfigError, match="did you mean 'plain'"):
        render_prompt("plian", "Q?", None)
    assert set(TEMPLATES.names()) == {"plain", "chat", "bare"}


# ---- "bare": the authors' prompt ----------------------------------------------------------------
# A chat template in the style of Qwen2.5-Instruct's (written for this test): a default system
# turn when the messages bring none, then one turn per message, then the assistant header.
_QWEN_STYLE = (
    "{% if messages[0]['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _chat_tokenizer():
    from rftctl.models.tiny import build_tokenizer

    tok = build_tokenizer(["What is 1 + 1? \\boxed{2}"], 300)
    tok.chat_template = _QWEN_STYLE
    return tok


def _authors_prompt(
    question, tokenizer, system_prompt=None, reply_prefix=None, enable_thinking=None
):
    """LITERAL REIMPLEMENTATION, for this test only, of how Trinity-RFT 0.5.1 (the version its
    examples/entropy README names) turns a math task into the rollout prompt text:
    trinity/common/workflows/workflow.py BaseSimpleWorkflow.format_messages (an optional system
    turn, the task's question as the user turn, an optional assistant reply prefix; the released
    examples/entropy/clipb.yaml and clipv.yaml set neither, and their math_boxed_reward adds no
    system prompt) and trinity/common/models/model.py apply_chat_template (continue the last
    message when it is the assistant's, else add the generation prompt)."""
    messages = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    messages.append({"role": "user", "content": question})
    if reply_prefix:
        messages.append({"role": "assistant", "content": reply_prefix})
    if messages[-1]["role"] == "assistant":
        return tokenizer.apply_chat_template(
            messages, tokenize=False, continue_final_message=True, chat_template=None
        )
    return tokenizer.apply_chat_template(
        messages,
        tokenize=False,
        add_generation_prompt=True,
        chat_template=None,
        enable_thinking=enable_thinking,
    )


@pytest.mark.parametrize(
    "question", ["What is 1 + 1?", "Find $x$ if $\\frac{x}{2} = 3$.\nGive x.", "  {b} "]
)
def test_bare_is_the_authors_prompt(question):
    tok = _chat_tokenizer()
    bare = render_prompt("bare", question, tok)
    assert bare == _authors_prompt(question, tok)
    assert bare == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
    )
    # "chat" differs from it only by the boxed instruction appended to the question
    chat = render_prompt("chat", question, tok)
    assert chat == _authors_prompt(question + BOXED_INSTRUCTION, tok)
    assert "\\boxed" not in bare.replace(question, "")


def test_bare_needs_a_chat_template():
    with pytest.raises(ConfigError, match="'bare' needs a tokenizer with a chat template"):
        render_prompt("bare", "Q?", None)
