"""Tokenizers from a model's own files: `tokenizer.json` (Hugging Face directory) or a GGUF's vocab and merges,
plus the model's chat template.

The chat template is rendered with jinja2 when it is installed; otherwise ChatML templates (SmolLM2, Qwen2) are
formatted directly, which gives the same string for the message lists the framework uses.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

DEFAULT_SMOLLM_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

# llama.cpp token types (gguf.TokenType): 3 = CONTROL, 4 = USER_DEFINED; both are added tokens in Hugging Face.
_CONTROL, _USER_DEFINED = 3, 4


def _tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise ImportError("tokenization needs the `tokenizers` package: pip install tokenizers") from None
    return tokenizers


@dataclass(frozen=True)
class Tokenizer:
    """Wraps a `tokenizers.Tokenizer` with the model's special ids and chat template."""

    backend: Any = field(compare=False)
    bos_id: int | None
    eos_id: int | None
    chat_template: str | None = None
    add_bos: bool = False
    """Whether a prompt starts with `bos_id` (Gemma's SentencePiece files say so; SmolLM2 and Qwen2 add none)."""

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (no BOS added: SmolLM2 and Qwen2 do not add one; special tokens are parsed)."""
        return list(self.backend.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Sequence[int], *, skip_special: bool = True) -> str:
        """Text of `ids` (negative ids, i.e. padding, are dropped)."""
        return self.backend.decode([int(i) for i in ids if int(i) >= 0], skip_special_tokens=skip_special)

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def apply_chat_template(self, messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool = True
                            ) -> str:
        """The prompt string the model expects for `messages` ([{"role", "content"}, ...])."""
        if not messages:
            raise ValueError("messages must not be empty")
        for m in messages:
            if set(m) < {"role", "content"}:
                raise ValueError(f"each message needs 'role' and 'content', got {dict(m)}")
        if self.chat_template is None:
            raise ValueError("this tokenizer has no chat template")
        try:
            import jinja2
        except ImportError:
            return chatml(messages, self.chat_template, add_generation_prompt)
        env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
        return env.from_string(self.chat_template).render(messages=list(messages),
                                                          add_generation_prompt=add_generation_prompt,
                                                          bos_token="", eos_token="")

    def chat_ids(self, user_text: str) -> list[int]:
        """Token ids of a one-turn chat prompt ending with the assistant header."""
        return self.encode(self.apply_chat_template([{"role": "user", "content": user_text}]))


def chatml(messages: Sequence[Mapping[str, str]], template: str, add_generation_prompt: bool = True) -> str:
    """ChatML formatting without jinja2; the default system message is the one the template inserts, if any."""
    if "<|im_start|>" not in template:
        raise ValueError("rendering a non-ChatML chat template needs jinja2: pip install jinja2")
    parts = []
    if messages[0]["role"] != "system" and "named SmolLM" in template:
        parts.append(f"<|im_start|>system\n{DEFAULT_SMOLLM_SYSTEM}<|im_end|>\n")
    for m in messages:
        parts.append(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n")
    if add_generation_prompt:
        parts.append("<|im_start|>assistant\n")
    return "".join(parts)


def tokenizer_from_gguf_metadata(meta: Mapping[str, Any], architecture: str | None = None) -> Tokenizer:
    """The tokenizer of GGUF `tokenizer.*` fields: byte-level BPE (model "gpt2"; pre-tokenizer "smollm"/"gpt2"), or
    SentencePiece (model "llama", e.g. Gemma 3; `architecture` names the file's model family)."""
    tk = _tokenizers()
    kind = meta.get("tokenizer.ggml.model")
    if kind == "llama":
        return _sentencepiece_from_gguf(meta, architecture)
    if kind != "gpt2":
        raise ValueError(f"GGUF tokenizer model {kind!r} is not supported (byte-level BPE 'gpt2', SentencePiece "
                         "'llama')")
    tokens = list(meta["tokenizer.ggml.tokens"])
    types = list(meta.get("tokenizer.ggml.token_type", [1] * len(tokens)))
    merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    bpe = tk.models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False)
    backend = tk.Tokenizer(bpe)
    pre = meta.get("tokenizer.ggml.pre", "gpt2")
    byte_level = tk.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre == "smollm":
        # llama.cpp's "smollm" pre-tokenizer = single digits, then the GPT-2 regex (as SmolLM2's tokenizer.json)
        backend.pre_tokenizer = tk.pre_tokenizers.Sequence([tk.pre_tokenizers.Digits(individual_digits=True),
                                                            byte_level])
    elif pre in ("gpt2", "default"):
        backend.pre_tokenizer = byte_level
    else:
        raise ValueError(f"GGUF pre-tokenizer {pre!r} is not supported (smollm, gpt2)")
    backend.decoder = tk.decoders.ByteLevel()
    specials = [tk.AddedToken(t, special=True, normalized=False)
                for t, ty in zip(tokens, types) if ty == _CONTROL]
    added = [tk.AddedToken(t, special=False, normalized=False) for t, ty in zip(tokens, types) if ty == _USER_DEFINED]
    backend.add_special_tokens(specials)
    if added:
        backend.add_tokens(added)
    return Tokenizer(backend, meta.get("tokenizer.ggml.bos_token_id"), meta.get("tokenizer.ggml.eos_token_id"),
                     meta.get("tokenizer.chat_template"))


def _sentencepiece_from_gguf(meta: Mapping[str, Any], architecture: str | None) -> Tokenizer:
    """A SentencePiece GGUF's tokenizer, rebuilt by transformers' GGUF converter (the `parity` extra): merges are
    recovered from the pieces' scores and Gemma's whitespace pieces fixed there, which is not worth redoing here."""
    try:
        from transformers.integrations.gguf.gguf_tokenizer_mapping import (GGUF_TOKENIZER_MAPPING,
                                                                           convert_gguf_tokenizer)
    except ImportError:
        raise ValueError("a SentencePiece GGUF tokenizer (Gemma) is read with transformers' converter: "
                         "pip install -e '.[parity]'") from None
    fields = {name: meta[f"tokenizer.{key}"] for key, name in GGUF_TOKENIZER_MAPPING["tokenizer"].items()
              if f"tokenizer.{key}" in meta}
    backend, _ = convert_gguf_tokenizer(architecture or "llama", fields)
    return Tokenizer(backend, meta.get("tokenizer.ggml.bos_token_id"), meta.get("tokenizer.ggml.eos_token_id"),
                     meta.get("tokenizer.chat_template"), add_bos=bool(meta.get("tokenizer.ggml.add_bos_token")))


def tokenizer_from_hf_dir(directory: str | Path) -> Tokenizer:
    """Tokenizer of a Hugging Face checkpoint directory (tokenizer.json + tokenizer_config.json / chat_template)."""
    tk = _tokenizers()
    directory = Path(directory)
    if not (directory / "tokenizer.json").is_file():
        raise ValueError(f"{directory}: no tokenizer.json")
    backend = tk.Tokenizer.from_file(str(directory / "tokenizer.json"))
    cfg_path = directory / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
    template = cfg.get("chat_template")
    if (directory / "chat_template.jinja").is_file():
        template = (directory / "chat_template.jinja").read_text()

    def special_id(key: str) -> int | None:
        tok = cfg.get(key)
        tok = tok.get("content") if isinstance(tok, dict) else tok
        return None if tok is None else backend.token_to_id(tok)

    return Tokenizer(backend, special_id("bos_token"), special_id("eos_token"), template)


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet: the printable character each byte is written as, inverted."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def token_bytes(tokenizer: "Tokenizer") -> list[bytes | None]:
    """The bytes of every token id of a `specjax.model.io.tokenizer.Tokenizer` (None for special tokens): byte-level
    BPE pieces decoded through GPT-2's byte alphabet, SentencePiece pieces with '▁' as a space and `<0xNN>` as a
    byte."""
    backend = tokenizer.backend
    special = {i for i, t in backend.get_added_tokens_decoder().items() if getattr(t, "special", False)}
    vocab = backend.get_vocab(with_added_tokens=True)
    pieces: list[str | None] = [None] * tokenizer.vocab_size
    for piece, i in vocab.items():
        if i < len(pieces):
            pieces[i] = piece
    # byte-level BPE decodes through GPT-2's byte alphabet; SentencePiece vocabularies (Gemma's) may hold 'Ġ' too
    byte_level = type(backend.decoder).__name__ == "ByteLevel"
    decoder = _byte_decoder()
    out: list[bytes | None] = []
    for i, piece in enumerate(pieces):
        if piece is None or i in special:
            out.append(None)
        elif byte_level:
            out.append(bytes(decoder[c] for c in piece) if all(c in decoder for c in piece) else None)
        elif len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            out.append(bytes([int(piece[3:5], 16)]))
        else:
            out.append(piece.replace("▁", " ").encode("utf-8"))
    return out


def byte_fallback_ids(tokenizer: "Tokenizer") -> list[int]:
    """The ids of a SentencePiece vocabulary's `<0xNN>` byte tokens (empty for byte-level BPE): they spell the same
    bytes as some pieces, and a tokenizer emits them only for bytes no piece covers."""
    vocab = tokenizer.backend.get_vocab(with_added_tokens=True)
    return sorted(i for piece, i in vocab.items() if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"))
