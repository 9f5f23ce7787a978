"""Deterministic, model-agnostic prompt text.

Prompts are sentences of common English words. Any tokenizer splits them into ordinary
tokens (roughly 1.3 tokens per word), so prompt length in tokens tracks length in words
across models. Prompts start with random words, so two requests share at most a short
prefix and no prefix cache can make one request's prefill free for the next.
"""

from __future__ import annotations

import numpy as np

from scalezero.errors import UserError

# Common words, a mix of nouns, verbs, adjectives and function words, so that the text
# reads like (meaningless) English rather than a list of rare strings.
WORDS: tuple[str, ...] = (
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "on",
    "with",
    "for",
    "from",
    "under",
    "over",
    "near",
    "after",
    "before",
    "while",
    "because",
    "but",
    "or",
    "so",
    "river",
    "mountain",
    "city",
    "village",
    "garden",
    "window",
    "door",
    "table",
    "chair",
    "book",
    "letter",
    "story",
    "song",
    "voice",
    "road",
    "bridge",
    "train",
    "ship",
    "harbor",
    "island",
    "forest",
    "field",
    "farm",
    "market",
    "school",
    "library",
    "kitchen",
    "office",
    "station",
    "museum",
    "engine",
    "machine",
    "signal",
    "network",
    "server",
    "lamp",
    "clock",
    "mirror",
    "paper",
    "stone",
    "water",
    "fire",
    "wind",
    "rain",
    "snow",
    "cloud",
    "sun",
    "moon",
    "star",
    "morning",
    "evening",
    "night",
    "winter",
    "summer",
    "spring",
    "autumn",
    "year",
    "day",
    "hour",
    "minute",
    "teacher",
    "student",
    "doctor",
    "farmer",
    "sailor",
    "painter",
    "writer",
    "builder",
    "child",
    "friend",
    "neighbor",
    "traveler",
    "stranger",
    "family",
    "crowd",
    "king",
    "queen",
    "bird",
    "horse",
    "dog",
    "cat",
    "fish",
    "tree",
    "flower",
    "apple",
    "bread",
    "coffee",
    "tea",
    "salt",
    "honey",
    "music",
    "color",
    "light",
    "shadow",
    "silence",
    "idea",
    "question",
    "answer",
    "reason",
    "plan",
    "map",
    "journey",
    "message",
    "memory",
    "dream",
    "walks",
    "runs",
    "builds",
    "writes",
    "reads",
    "opens",
    "closes",
    "carries",
    "finds",
    "loses",
    "keeps",
    "gives",
    "takes",
    "makes",
    "brings",
    "follows",
    "watches",
    "hears",
    "sees",
    "knows",
    "remembers",
    "forgets",
    "explains",
    "describes",
    "counts",
    "measures",
    "repairs",
    "paints",
    "sings",
    "waits",
    "returns",
    "leaves",
    "crosses",
    "climbs",
    "plants",
    "cooks",
    "shares",
    "asks",
    "answers",
    "old",
    "new",
    "small",
    "large",
    "quiet",
    "loud",
    "bright",
    "dark",
    "warm",
    "cold",
    "quick",
    "slow",
    "early",
    "late",
    "careful",
    "curious",
    "gentle",
    "simple",
    "strange",
    "famous",
    "hidden",
    "empty",
    "full",
    "green",
    "blue",
    "red",
    "golden",
    "silver",
    "wooden",
    "narrow",
    "wide",
    "distant",
    "ancient",
    "modern",
    "busy",
    "calm",
    "tired",
    "happy",
    "every",
    "each",
    "another",
    "many",
    "few",
    "some",
    "most",
    "always",
    "often",
    "never",
    "again",
    "slowly",
    "quickly",
    "together",
    "alone",
    "today",
    "tomorrow",
    "yesterday",
    "there",
    "here",
    "then",
    "now",
)

# Mean sentence length in words; sentence ends are drawn per word with 1/this probability.
MEAN_SENTENCE_WORDS = 9

# Rounds of redrawing duplicate prompts before giving up (only reachable when the
# configured length admits fewer distinct prompts than there are requests).
MAX_REDRAW_ROUNDS = 50


def draw_lengths(rng: np.random.Generator, n: int, low: int, high: int) -> np.ndarray:
    """n integers uniform on [low, high] (inclusive); constant when low == high."""
    if low == high:
        return np.full(n, low, dtype=np.int64)
    return rng.integers(low, high + 1, size=n, dtype=np.int64)


def _render(word_ids: np.ndarray, ends: np.ndarray) -> str:
    words: list[str] = []
    capitalize = True
    last = len(word_ids) - 1
    for pos, (word_id, end) in enumerate(zip(word_ids.tolist(), ends.tolist(), strict=True)):
        word = WORDS[word_id]
        if capitalize:
            word = word[0].upper() + word[1:]
        if end or pos == last:
            word += "."
        capitalize = bool(end)
        words.append(word)
    return " ".join(words)


def _draw_prompts(rng: np.random.Generator, lengths: np.ndarray) -> list[str]:
    total = int(lengths.sum())
    word_ids = rng.integers(0, len(WORDS), size=total)
    ends = rng.random(total) < 1.0 / MEAN_SENTENCE_WORDS
    bounds = np.concatenate(([0], np.cumsum(lengths)))
    return [
        _render(word_ids[bounds[i] : bounds[i + 1]], ends[bounds[i] : bounds[i + 1]])
        for i in range(len(lengths))
    ]


def _duplicates(prompts: list[str]) -> list[int]:
    seen: set[str] = set()
    dup_idx: list[int] = []
    for i, prompt in enumerate(prompts):
        if prompt in seen:
            dup_idx.append(i)
        else:
            seen.add(prompt)
    return dup_idx


def _distinct_prompts(rng: np.random.Generator, lengths: np.ndarray) -> tuple[list[str], int]:
    # Duplicates (rare unless prompts are very short) are redrawn from the same stream,
    # so the result stays a deterministic function of the generator's state. Returns
    # the prompts and how many duplicates are left after MAX_REDRAW_ROUNDS.
    prompts = _draw_prompts(rng, lengths)
    for _ in range(MAX_REDRAW_ROUNDS):
        dup_idx = _duplicates(prompts)
        if not dup_idx:
            return prompts, 0
        redrawn = _draw_prompts(rng, lengths[dup_idx])
        for i, prompt in zip(dup_idx, redrawn, strict=True):
            prompts[i] = prompt
    return prompts, len(_duplicates(prompts))


def make_prompts(
    rng: np.random.Generator, n: int, min_words: int, max_words: int, workload: str
) -> list[str]:
    """n distinct prompts with a word count uniform on [min_words, max_words]."""
    lengths = draw_lengths(rng, n, min_words, max_words)
    prompts, duplicates = _distinct_prompts(rng, lengths)
    if duplicates:
        raise UserError(
            f"workload {workload!r}: cannot make {n} distinct prompts of "
            f"{min_words}-{max_words} words; raise 'prompt_words'"
        )
    return prompts


def make_prompts_of_lengths(
    rng: np.random.Generator, words: np.ndarray
) -> tuple[list[str], int]:
    """Prompts, the i-th of exactly words[i] words (each >= 1), distinct where the
    lengths allow. Returns them and the number of duplicates left: a recorded trace may
    hold more very short prompts (a word or two) than there are distinct ones."""
    lengths = np.asarray(words, dtype=np.int64)
    if lengths.size and int(lengths.min()) < 1:
        raise ValueError("prompt word counts must be >= 1")
    return _distinct_prompts(rng, lengths)
