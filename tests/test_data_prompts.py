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
    assert set(TEMPLATES.names()) == {"plain", "chat"}
