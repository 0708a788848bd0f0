"""The NIAH grid: one haystack per language, a needle at each depth, cut to each context length.

Everything is made from a seed, offline. A haystack is a stream of segments (the project's
filler sentences, or the user's text files cut at sentence ends), each tokenized on its own with
the model's tokenizer, so a token prefix of the stream is the same in every cell. Cell (length L,
depth d) is

    frame head + intro + haystack[0:p] + needle + haystack[p:e] + ending + frame tail

where `e` is the last segment end that leaves room for the rest of the prompt and the answer
inside L tokens, and `p` the segment end nearest to d% of `e`. Every cell is the haystack's
prefix up to its needle, so cells share their prefixes and a prefix-reusing engine computes each
shared prefix once. A cell longer than the model's context is skipped (recorded as such), never
truncated.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kanana_eval.core.errors import ConfigError, DataUnavailableError
from kanana_eval.tasks.niah import filler

GENERATOR_VERSION = 1
LANGUAGES = ("en", "ko")
FORMS = ("retrieval", "qa")
DEFAULT_DEPTHS = tuple(range(0, 101, 10))
MIN_LENGTH = 1024
TEXT_SUFFIXES = (".txt", ".md", ".text")

Encode = Callable[[str], list[int]]

# Needle keys: words in no filler list, so the needle is the key's only mention in a haystack.
_KEYS = {"en": ("Lisbon", "Nairobi", "Quito", "Oslo", "Hanoi", "Tbilisi", "Montevideo", "Accra"),
         "ko": ("리스본", "나이로비", "키토", "오슬로", "하노이", "트빌리시", "몬테비데오",
                "아크라")}
_TEXTS = {
    "en": {
        "needle": " The special magic number for {key} is {value}.",
        "intro": "Read the following text and remember the special magic number in it.\n\n",
        "retrieval": "\n\nThe special magic number for {key} is",
        "qa": ("\n\nWhat is the special magic number for {key} mentioned in the text above? "
               "Answer with the number only."),
    },
    "ko": {
        "needle": " {key}의 특별한 마법의 숫자는 {value}입니다.",
        "intro": "다음 글을 읽고 그 안에 나오는 특별한 마법의 숫자를 기억하세요.\n\n",
        "retrieval": "\n\n{key}의 특별한 마법의 숫자는",
        "qa": "\n\n위 글에 나온 {key}의 특별한 마법의 숫자는 무엇입니까? 숫자만 답하세요.",
    },
}


@dataclass(frozen=True)
class Needle:
    """The fact hidden in a haystack: a key and a seven-digit value."""

    language: str
    key: str
    value: str

    def text(self, part: str) -> str:
        """The needle sentence, the intro, or the prompt's ending for a form."""
        return _TEXTS[self.language][part].format(key=self.key, value=self.value)


def needle_for(language: str, seed: int) -> Needle:
    rng = random.Random(f"niah-needle-{language}-{seed}")
    return Needle(language, rng.choice(_KEYS[language]), str(rng.randrange(1_000_000, 10_000_000)))


@dataclass(frozen=True)
class Grid:
    """Context lengths (tokens, prompt and answer together) x needle depths (%) x languages."""

    lengths: tuple[int, ...]
    depths: tuple[int, ...] = DEFAULT_DEPTHS
    languages: tuple[str, ...] = LANGUAGES

    def describe(self) -> dict[str, Any]:
        return {"lengths": list(self.lengths), "depths": list(self.depths),
                "languages": list(self.languages)}


def default_lengths(context: int) -> tuple[int, ...]:
    """Like the README figures: doubling lengths from 1K up to the model's context."""
    lengths, length = [], MIN_LENGTH
    while length <= context:
        lengths.append(length)
        length *= 2
    return tuple(lengths) or (MIN_LENGTH,)


def parse_lengths(text: str) -> tuple[int, ...]:
    """`1K,2K,8192,128K` -> token counts (K = 1024), sorted, unique."""
    out = set()
    for part in (p.strip() for p in text.split(",") if p.strip()):
        match = re.fullmatch(r"(\d+)\s*([kK]?)", part)
        if not match or int(match.group(1)) <= 0:
            raise ConfigError(f"--niah-lengths: '{part}' is not a token count like 4K or 4096")
        out.add(int(match.group(1)) * (1024 if match.group(2) else 1))
    if not out:
        raise ConfigError("--niah-lengths names no length")
    return tuple(sorted(out))


def parse_depths(text: str) -> tuple[int, ...]:
    """`0,50,100` -> needle depths in percent, sorted, unique."""
    try:
        depths = sorted({int(p) for p in text.split(",") if p.strip()})
    except ValueError as exc:
        raise ConfigError(f"--niah-depths: {text!r} is not a list of percents") from exc
    if not depths or depths[0] < 0 or depths[-1] > 100:
        raise ConfigError(f"--niah-depths: {text!r} must be percents between 0 and 100")
    return tuple(depths)


def parse_languages(text: str) -> tuple[str, ...]:
    langs = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    unknown = [lang for lang in langs if lang not in LANGUAGES]
    if not langs or unknown:
        raise ConfigError(f"--niah-languages: choose from {', '.join(LANGUAGES)} (got {text!r})")
    return langs


# ---------------------------------------------------------------------------- haystacks
@dataclass(frozen=True)
class HaystackSource:
    """Where filler comes from: the project's sentences, or the user's folder of text files."""

    folder: Path | None = None
    segments_of_folder: tuple[str, ...] = ()
    files: dict[str, str] = field(default_factory=dict)  # name -> sha256

    def segments(self, language: str, seed: int) -> Iterator[str]:
        """Text pieces that end at a sentence end; the needle goes between two of them."""
        if self.folder is None:
            return (" " + s for s in filler.sentences(language, seed))
        return itertools.cycle(self.segments_of_folder)  # a short folder repeats (recorded)

    def describe(self) -> dict[str, Any]:
        if self.folder is None:
            return {"kind": "filler", "generator_version": GENERATOR_VERSION}
        return {"kind": "folder", "path": str(self.folder), "files": dict(self.files)}


_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|\n\s*\n")


def folder_haystack(folder: Path) -> HaystackSource:
    """The user's text files (sorted by name), cut at sentence ends; no usable text: DataError."""
    if not folder.is_dir():
        raise DataUnavailableError(f"--haystack-dir {folder} is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
    texts, shas = [], {}
    for path in files:
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if text.strip():
            texts.append(text)
            shas[str(path.relative_to(folder))] = hashlib.sha256(raw).hexdigest()
    pieces = [p.strip() for t in texts for p in _SENTENCE_END.split(t) if p and p.strip()]
    if not pieces:
        raise DataUnavailableError(f"--haystack-dir {folder} has no usable text (UTF-8 files "
                                   f"ending in {', '.join(TEXT_SUFFIXES)} with some text)")
    return HaystackSource(folder.resolve(), tuple(" " + p for p in pieces), shas)


class TokenStream:
    """A haystack's segments tokenized one by one: token ids and the segment ends (offsets)."""

    def __init__(self, segments: Iterator[str], encode: Encode) -> None:
        self._segments = segments
        self._encode = encode
        self.ids: list[int] = []
        self.texts: list[str] = []
        self.ends: list[int] = [0]

    def extend_to(self, tokens: int) -> None:
        while self.ends[-1] < tokens:
            try:
                text = next(self._segments)
            except StopIteration as exc:  # the filler lists ran out (millions of sentences)
                raise DataUnavailableError("the NIAH filler ran out of distinct sentences") from exc
            ids = self._encode(text)
            if not ids:
                continue
            self.ids.extend(ids)
            self.texts.append(text)
            self.ends.append(len(self.ids))

    def end_at_most(self, tokens: int) -> int:
        """Index of the last segment end at or before `tokens` tokens."""
        self.extend_to(tokens + 1)
        return max(i for i, end in enumerate(self.ends) if end <= tokens)

    def nearest_end(self, tokens: float, last: int) -> int:
        return min(range(last + 1), key=lambda i: (abs(self.ends[i] - tokens), i))


# ---------------------------------------------------------------------------- cells
@dataclass(frozen=True)
class Frame:
    """What wraps a cell's text: the chat template around a user turn, or a BOS token."""

    head: tuple[int, ...] = ()
    tail: tuple[int, ...] = ()
    head_text: str = ""
    tail_text: str = ""


@dataclass
class Cell:
    """One grid cell: its prompt as token ids and text, or why it was skipped."""

    form: str
    language: str
    length: int
    depth: int
    needle: Needle
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    needle_token: int | None = None
    haystack_tokens: int = 0
    skipped: str | None = None

    @property
    def item_id(self) -> str:
        return cell_id(self.form, self.language, self.length, self.depth)


def cell_id(form: str, language: str, length: int, depth: int) -> str:
    """The item id of a cell: the same in every run of the same grid, so `compare` pairs it."""
    return f"{form}/{language}/{length}/{depth:03d}"


def build_cells(grid: Grid, form: str, *, seed: int, encode: Encode, frame: Frame,
                max_new_tokens: int, context: int, source: HaystackSource) -> list[Cell]:
    """Every cell of the grid for one form, in grid order; over-long cells come back skipped."""
    if form not in FORMS:
        raise ConfigError(f"unknown NIAH form '{form}' (choose from {', '.join(FORMS)})")
    cells = []
    for language in grid.languages:
        needle = needle_for(language, seed)
        parts = {name: needle.text(name) for name in ("intro", "needle", form)}
        ids = {name: encode(text) for name, text in parts.items()}
        overhead = (len(frame.head) + len(ids["intro"]) + len(ids["needle"]) + len(ids[form])
                    + len(frame.tail) + max_new_tokens)
        stream = TokenStream(source.segments(language, seed), encode)
        for length in grid.lengths:
            for depth in grid.depths:
                cell = Cell(form, language, length, depth, needle)
                cells.append(cell)
                if length > context:
                    cell.skipped = (f"longer than the model's context ({context} tokens)")
                    continue
                budget = length - overhead
                if budget <= 0:
                    cell.skipped = f"too short for the needle and question ({overhead} tokens)"
                    continue
                last = stream.end_at_most(budget)
                at = stream.nearest_end(stream.ends[last] * depth / 100, last)
                head, tail = stream.ids[:stream.ends[at]], stream.ids[stream.ends[at]:
                                                                      stream.ends[last]]
                cell.tokens = [*frame.head, *ids["intro"], *head, *ids["needle"], *tail,
                               *ids[form], *frame.tail]
                cell.needle_token = len(frame.head) + len(ids["intro"]) + len(head)
                cell.haystack_tokens = len(head) + len(tail)
                cell.text = "".join([frame.head_text, parts["intro"].lstrip(),
                                     *stream.texts[:at], parts["needle"],
                                     *stream.texts[at:last], parts[form], frame.tail_text])
    return cells


def fingerprint(cells: Sequence[Cell]) -> str:
    """sha256 of the generated items: ids, prompt texts and values, in grid order."""
    digest = hashlib.sha256()
    for cell in cells:
        digest.update(json.dumps([cell.item_id, cell.text, cell.needle.value, cell.skipped],
                                 ensure_ascii=False).encode())
    return digest.hexdigest()


def shared_prefix_tokens(prompts: Iterable[Sequence[int]]) -> int:
    """Tokens a prefix-sharing engine prefills for these prompts: the size of their token trie.

    Sorted, each prompt shares with its predecessor their longest common prefix (which is the
    longest it shares with any earlier prompt); at least its last token is computed.
    """
    total, previous = 0, None
    for tokens in sorted(list(p) for p in prompts):
        common = 0 if previous is None else common_prefix(previous, tokens)
        total += len(tokens) - min(common, len(tokens) - 1)
        previous = tokens
    return total


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n
