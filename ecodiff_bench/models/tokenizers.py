"""Tokenizers built offline, without any hub download.

* CLIP: the byte-level BPE of OpenAI's CLIP, read from the vocabulary file that open_clip ships in its
  package (``bpe_simple_vocab_16e6.txt.gz``); token ids match open_clip's tokenizer (49,408 entries).
* T5: a unigram model from an explicit (piece, score) list of 32,000 pieces plus 100 sentinel tokens
  (32,100 in all, as T5's). The pieces are derived from the CLIP vocabulary; their content is not the
  published one, which does not matter for speed, memory and energy work (sequence length is fixed by
  padding to ``max_sequence_length``).
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import math
from pathlib import Path

CLIP_BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
CLIP_NUM_MERGES = 49152 - 256 - 2  # the merges open_clip reads from the file


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins for bytes used by byte-level BPE (GPT-2 / CLIP scheme), in vocab order.

    Bytes that are printable in Latin-1 keep their own character and come first (in byte order); the
    others follow, shifted to code points from 256 upwards.
    """
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in set(keep)]
    return [chr(b) for b in keep] + [chr(256 + i) for i in range(len(others))]


def clip_bpe_file() -> Path:
    """Path of open_clip's bundled BPE vocabulary (found without importing open_clip)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "open_clip is needed for its bundled CLIP BPE vocabulary; install it with "
            "`pip install open-clip-torch`"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / CLIP_BPE_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(f"{CLIP_BPE_FILE} not found in the open_clip package ({spec.origin})")


@functools.lru_cache(maxsize=1)
def clip_vocab_and_merges() -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, str], ...]]:
    """(token -> id pairs, merge pairs) of CLIP's BPE, built from open_clip's vocabulary file."""
    with gzip.open(clip_bpe_file(), "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    merges = tuple(tuple(line.split()) for line in lines[1 : 1 + CLIP_NUM_MERGES])
    symbols = _byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return tuple((t, i) for i, t in enumerate(tokens)), merges


def _require_transformers_5() -> None:
    """The tokenizers are built from in-memory vocabularies, an API of transformers 5 (4.x wants files)."""
    import transformers

    major = int(transformers.__version__.split(".")[0])
    if major < 5:
        raise RuntimeError(
            f"building tokenizers offline needs transformers>=5 (found {transformers.__version__}); "
            "install it with `pip install 'transformers>=5'`"
        )


def clip_tokenizer(*, pad_token: str = "<|endoftext|>", model_max_length: int = 77):
    """A transformers CLIPTokenizer equal to OpenAI CLIP's (SDXL's ``tokenizer_2`` pads with "!")."""
    _require_transformers_5()
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab_and_merges()
    return CLIPTokenizer(
        vocab=dict(vocab), merges=list(merges), pad_token=pad_token, model_max_length=model_max_length
    )


@functools.lru_cache(maxsize=4)
def t5_pieces(num_pieces: int = 32000) -> tuple[tuple[str, float], ...]:
    """A unigram piece list in T5's layout: <pad>, </s>, <unk>, then ``num_pieces - 3`` pieces."""
    pieces: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    seen = {p for p, _ in pieces}
    # every single printable ASCII character, so that plain text never falls back to <unk>
    candidates = [chr(c) for c in range(33, 127)]
    vocab, _ = clip_vocab_and_merges()
    for token, _ in vocab[512:-2]:  # learned merges, in merge order (frequent first)
        if token.endswith("</w>"):
            candidates.append("▁" + token[: -len("</w>")])
        else:
            candidates.append(token)
    for piece in candidates:
        if len(pieces) >= num_pieces:
            break
        if piece in seen or not piece.isprintable():
            continue
        seen.add(piece)
        pieces.append((piece, -math.log(len(pieces) + 1.0)))
    if len(pieces) < num_pieces:
        raise ValueError(f"only {len(pieces)} distinct pieces available, {num_pieces} requested")
    return tuple(pieces)


def t5_tokenizer(*, num_pieces: int = 32000, extra_ids: int = 100, model_max_length: int = 512):
    """A transformers T5 tokenizer (unigram) with ``num_pieces + extra_ids`` ids and T5's special ids."""
    _require_transformers_5()
    from transformers import T5Tokenizer

    vocab = list(t5_pieces(num_pieces))
    vocab += [(f"<extra_id_{i}>", 0.0) for i in reversed(range(extra_ids))]
    return T5Tokenizer(vocab=vocab, extra_ids=extra_ids, model_max_length=model_max_length)
