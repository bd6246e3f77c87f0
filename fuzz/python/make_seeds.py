"""Writes the seed corpora of the atheris targets (fuzz/python/corpus/TARGET/): chat templates
of the kinds models ship (ChatML, Llama 3's, one with tools and raise_exception) and
tokenizer_config.json / generation_config.json / chat_template.json triples.

    python3 fuzz/python/make_seeds.py
"""

from __future__ import annotations

import json
from pathlib import Path

CORPUS = Path(__file__).parent / "corpus"

TEMPLATES = {
    "chatml": (
        "{{ bos_token }}{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
        "{{ message['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
    "llama3": (
        "{% set loop_messages = messages %}{% for message in loop_messages %}"
        "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + "
        "message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
        "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
        "{% endif %}"
    ),
    "tools": (
        "{% if messages[0]['role'] != 'user' and messages[0]['role'] != 'system' %}"
        "{{ raise_exception('first message must be user or system') }}{% endif %}"
        "{% if tools is defined %}{{ tools | tojson(indent=2) }}{% endif %}"
        "{% for m in messages %}{% if loop.first %}{{ '%s: ' % m.role }}{% endif %}"
        "{{ m.content.split() | join(' ') | upper }}{{ '{:>4}'.format(loop.index) }}"
        "{% endfor %}{{ strftime_now('%Y') | length }}{{ range(3) | list | length }}"
    ),
}

CONFIGS = {
    "bos-eos": [{"bos_token": "<s>", "eos_token": "</s>", "chat_template": "{{ 1 }}"}, {}],
    "added-tokens": [
        {"bos_token": {"content": "<s>", "lstrip": False}, "eos_token": {"content": "</s>"}},
        {"eos_token_id": [2, 3]},
        {"chat_template": "{{ messages }}"},
    ],
    "named-templates": [
        {"chat_template": [{"name": "default", "template": "D"}, {"name": "tool_use"}]},
        {"eos_token_id": 2},
    ],
}


def main() -> None:
    for name, source in TEMPLATES.items():
        path = CORPUS / "chat_template" / f"seed-{name}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(source.encode() + b"\0Hello, world!")
    for name, files in CONFIGS.items():
        path = CORPUS / "tokenizer_config" / f"seed-{name}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0".join(json.dumps(f).encode() for f in files))


if __name__ == "__main__":
    main()
