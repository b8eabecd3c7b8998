"""Tokenizers for the zoo, built offline.

CLIP (byte-level BPE): a compact subset of the real CLIP vocabulary. We run CLIP's own BPE (the merge
list open_clip ships as ``bpe_simple_vocab_16e6.txt.gz``) on every word of a small word list (all
caption words plus a few common ones), record which merges it applies, and keep only those merges in
their original order, with the 512 byte-level base symbols and the two special tokens. Because the kept
merges keep their relative ranks, every listed word splits exactly as the full CLIP tokenizer splits it;
any other text still tokenizes, falling back to shorter pieces or single bytes. Ids are re-numbered
compactly (bytes, bytes + "</w>", merges, <|startoftext|>, <|endoftext|>), so <|endoftext|> has the
largest id, as in CLIP (open_clip's argmax pooling relies on that).

T5 (unigram): an explicit (piece, log-probability) list: the special pieces <pad>=0, </s>=1, <unk>=2,
whole words with a high score, and single characters with a low score (fallback for any other text).
"""

from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path

from .data import all_captions

CLIP_MAX_LENGTH = 16
T5_MAX_LENGTH = 16

EXTRA_WORDS = (
    "a",
    "an",
    "the",
    "of",
    "and",
    "on",
    "in",
    "with",
    "this",
    "is",
    "photo",
    "picture",
    "image",
    "drawing",
    "number",
    "digit",
    "digits",
    "handwritten",
    "written",
    "hand",
    "black",
    "white",
    "background",
    "ink",
    "paper",
    "small",
    "large",
    "simple",
    "clean",
    "blurry",
    "bold",
    "thin",
)


def corpus_words() -> list[str]:
    words = set(EXTRA_WORDS)
    for caption, _ in all_captions():
        words.update(caption.lower().split())
    return sorted(words)


def _clip_bpe_ranks() -> dict[tuple[str, str], int]:
    import open_clip.tokenizer as oct

    path = Path(oct.default_bpe())
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1] if line.strip()]
    return {m: i for i, m in enumerate(merges)}


def _bpe_applied(word_symbols: list[str], ranks: dict[tuple[str, str], int]) -> set[tuple[str, str]]:
    """Run BPE on one word; return the merges it applied."""
    sym = list(word_symbols)
    used: set[tuple[str, str]] = set()
    while len(sym) > 1:
        pairs = {(sym[i], sym[i + 1]) for i in range(len(sym) - 1)}
        best = min(pairs, key=lambda p: ranks.get(p, float("inf")))
        if best not in ranks:
            break
        used.add(best)
        out, i = [], 0
        while i < len(sym):
            if i < len(sym) - 1 and (sym[i], sym[i + 1]) == best:
                out.append(sym[i] + sym[i + 1])
                i += 2
            else:
                out.append(sym[i])
                i += 1
        sym = out
    return used


@lru_cache(maxsize=1)
def clip_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(vocab, merges) of the compact CLIP BPE tokenizer."""
    from open_clip.tokenizer import bytes_to_unicode

    byte_enc = bytes_to_unicode()
    ranks = _clip_bpe_ranks()
    used: set[tuple[str, str]] = set()
    for word in corpus_words():
        symbols = [byte_enc[b] for b in word.encode("utf-8")]
        symbols[-1] = symbols[-1] + "</w>"
        used |= _bpe_applied(symbols, ranks)
    merges = sorted(used, key=lambda m: ranks[m])
    base = list(byte_enc.values())
    tokens = base + [b + "</w>" for b in base] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab: dict[str, int] = {}
    for t in tokens:
        if t not in vocab:
            vocab[t] = len(vocab)
    return vocab, merges


def build_clip_tokenizer(max_length: int = CLIP_MAX_LENGTH):
    """A transformers CLIPTokenizer over the compact vocabulary."""
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab_and_merges()
    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), model_max_length=max_length)


def clip_special_ids() -> dict[str, int]:
    vocab, _ = clip_vocab_and_merges()
    eot = vocab["<|endoftext|>"]
    return {
        "bos_token_id": vocab["<|startoftext|>"],
        "eos_token_id": eot,
        "pad_token_id": eot,
        "vocab_size": len(vocab),
    }


@lru_cache(maxsize=1)
def t5_pieces() -> list[tuple[str, float]]:
    """Unigram (piece, score) list: specials, words, then single characters."""
    pieces: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -4.0)]
    seen = {p for p, _ in pieces}
    for w in corpus_words():
        p = "\u2581" + w
        if p not in seen:
            pieces.append((p, -6.0 - 0.01 * len(pieces)))
            seen.add(p)
    chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"-()/&+*=#@%$_"
    for c in chars:
        for p in (c, "\u2581" + c):
            if p not in seen:
                pieces.append((p, -12.0))
                seen.add(p)
    return pieces


def build_t5_tokenizer(max_length: int = T5_MAX_LENGTH):
    """A transformers T5 tokenizer (fast, tokenizers backend) from the explicit unigram list."""
    from transformers import T5TokenizerFast

    return T5TokenizerFast(vocab=list(t5_pieces()), extra_ids=0, model_max_length=max_length)


def t5_vocab_size() -> int:
    return len(t5_pieces())
