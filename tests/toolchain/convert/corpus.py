"""Texts the converted tokenizers must split exactly as the reference does.

Different from the text the tiny tokenizers were trained on (fixtures/tiny_tokenizers.py),
so unseen words, scripts and byte fallbacks are exercised.
"""

from __future__ import annotations

#: lines that start with a visible character (see LEADING_WHITESPACE for why)
TEXTS: list[str] = [
    "Hello, world! This is a test of the emergency broadcast system.",
    "I'm sure you'll agree: we've done it, they'd say, and it's fine.",
    "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich.",
    "Portez ce vieux whisky au juge blond qui fume — à Noël, où ça ?",
    "¡Él está aquí! ¿Dónde están los niños? Año nuevo, vida nueva.",
    "В чащах юга жил бы цитрус? Да, но фальшивый экземпляр!",
    "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία.",
    "人工智能正在改变世界，机器学习是其中的关键技术。",
    "日本語の文章をトークン化します。カタカナとひらがなと漢字。",
    "안녕하세요, 세계! 오늘 날씨가 정말 좋네요.",
    "مرحبا بكم في عالم الذكاء الاصطناعي.",
    "नमस्ते दुनिया, यह एक परीक्षण है।",
    "Emoji soup: 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 🇺🇳 ❤️‍🔥 🤖",
    "import numpy as np\nx = np.arange(10) ** 2  # squares\nprint(x.sum())",
    '{"key": [1, 2.5, null, true], "nested": {"a": "b\\n"}}',
    "int main(void) {\n\treturn 0;\n}\n",
    "Whitespace   runs\t\tand\ttabs\n\n\n\nmany newlines      end",
    "Digits 0 12 345 6789 01234 3.14159 -42 1e-9 2024-12-31T23:59:59Z",
    "URL https://example.com/path?q=1&r=two#frag and mail a.b@example.org",
    "ALL CAPS TEXT, MiXeD cAsE, snake_case, camelCase, kebab-case.",
    "Repeated letters: aaaaaaaaaaaaaaaa bbbbbbbbbbbb zzzzzzzzzzzzzzzzzzzz",
    "Symbols ~!@#$%^&*()_+-=[]{}|;':\",./<>? and `backticks` ```code```",
    "Mixed: English 中文 русский العربية 日本語 한국어 emoji 🎉 end.",
    "tab\tseparated\tvalues\nline two\r\nwindows line",
]

#: texts that begin with whitespace: transformers 5's LlamaTokenizer (a Metaspace
#: pre-tokenizer) drops sentencepiece's dummy prefix before them, llama.cpp and the
#: sentencepiece library do not; SentencePiece vocabularies are checked against the
#: sentencepiece library on these.
LEADING_WHITESPACE: list[str] = [
    " leading space",
    "    four spaces of indentation",
    "\ttab first",
    "\n\nnewlines first",
]

#: scripts llama.cpp's WordPiece normalizer treats differently from BertNormalizer:
#: it drops Hangul vowel jamo and Devanagari spacing vowel signs after NFD, where
#: transformers keeps them; a llama.cpp tokenizer limitation the GGUF cannot change.
WORDPIECE_DIVERGENT_SCRIPTS = ("안녕하세요", "नमस्ते", "한국어")


def wordpiece_texts() -> list[str]:
    return [t for t in TEXTS if not any(s in t for s in WORDPIECE_DIVERGENT_SCRIPTS)]
