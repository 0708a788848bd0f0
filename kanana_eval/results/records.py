"""The result schema v1 as typed records: one item, one score row, scores.json, manifest.json.

These models and the JSON Schemas in `results/schemas/` describe the same files; a test holds
them together. Every record keeps fields it does not know (`extra="allow"`), so a later issue
extends the schema without breaking older readers, and nothing is ever renamed.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1

Verdict = Literal["correct", "wrong", "passed", "failed", "timeout", "error", "no_answer", "scored",
                  "unscored", "judged", "unparsable", "unjudged"]


class Scale(str, Enum):
    """What a benchmark's value means: a fraction 0-1 (shown as percent) or a 1-10 judge score."""

    FRACTION = "fraction"
    JUDGE_1_10 = "judge_1_10"

    @property
    def points_per_unit(self) -> float:
        """Compared and printed in percent points for fractions, in score points for judges."""
        return 100.0 if self is Scale.FRACTION else 1.0

    @property
    def top(self) -> float:
        """The largest valid value."""
        return 1.0 if self is Scale.FRACTION else 10.0

    @property
    def unit(self) -> str:
        return "points" if self is Scale.FRACTION else "score points"


class _Record(BaseModel):
    """A schema-v1 record: unknown fields are kept; absent optional fields stay absent."""

    model_config = ConfigDict(extra="allow", validate_assignment=False, use_enum_values=True)
    OMIT_WHEN_NONE: ClassVar[frozenset[str]] = frozenset()

    def to_json(self) -> dict[str, Any]:
        """The record as written to disk (optional fields that were never given are left out)."""
        out: dict[str, Any] = {}
        values = {name: getattr(self, name) for name in type(self).model_fields}
        values.update(self.model_extra or {})
        for key, value in values.items():
            if value is None and key in self.OMIT_WHEN_NONE:
                continue
            out[key] = _plain(value)
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, _Record):
        return value.to_json()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class Item(_Record):
    """One scored item (`items/<benchmark>.jsonl`); `item_id` (+ `turn`) pairs it across runs."""

    OMIT_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"turn", "truncated", "choices",
                                                          "loglikelihoods", "details",
                                                          "judge_score"})

    schema_version: Literal[1] = SCHEMA_VERSION
    benchmark: str
    item_id: str
    subtask: str | None = None
    turn: int | None = Field(default=None, ge=1)
    prompt: str
    output: str
    extracted: str | None  # every item states these three, null or not (schema v1 requires them)
    target: str | None
    score: float | None
    verdict: Verdict
    truncated: bool | None = None
    choices: list[str] | None = None
    loglikelihoods: list[float] | None = None
    details: dict[str, Any] | None = None
    judge_score: float | None = None  # NIAH --niah-judge: the 1-10 rating beside `score`

    @property
    def key(self) -> tuple[str, int | None]:
        """What `compare` pairs on."""
        return self.item_id, self.turn

    def add_details(self, **values: Any) -> None:
        """Merge values into `details` (created on first use)."""
        self.details = {**(self.details or {}), **values}


class SubtaskScore(_Record):
    value: float | None
    n: int


class ScoreRow(_Record):
    """One benchmark of `scores.json`: the headline value, its error bar and what qualifies it."""

    OMIT_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"metrics", "n_no_answer", "n_truncated",
                                                          "n_dropped", "judge", "n_skipped",
                                                          "n_failed", "judge_score"})

    benchmark: str = Field(pattern=r"^[a-z0-9_]+@[a-z0-9_]+$")
    protocol: str
    column: str
    metric: str
    value: float | None
    scale: Scale = Scale.FRACTION
    stderr: float | None
    n: int = Field(ge=0)
    n_available: int | None = None
    derived_fewshot: bool = False
    subtasks: dict[str, SubtaskScore] = Field(default_factory=dict)
    metrics: dict[str, float | None] | None = None
    n_no_answer: int | None = Field(default=None, ge=0)
    n_truncated: int | None = Field(default=None, ge=0)
    n_dropped: int | None = Field(default=None, ge=0)
    judge: dict[str, Any] | None = None
    n_skipped: int | None = Field(default=None, ge=0)  # NIAH: cells beyond the model's context
    n_failed: int | None = Field(default=None, ge=0)  # NIAH: cells whose generation failed
    judge_score: dict[str, Any] | None = None  # NIAH --niah-judge: mean 1-10 rating, per language

    @property
    def scale_enum(self) -> Scale:
        return Scale(self.scale)


class ScoresModel(_Record):
    name: str
    registry_key: str | None = None
    readme_rows: list[str]


class Scores(_Record):
    """`scores.json`: one row per benchmark of a run."""

    schema_version: Literal[1] = SCHEMA_VERSION
    run_id: str
    model: ScoresModel
    protocols: list[str]
    smoke: bool
    limit: int | None = None
    scores: list[ScoreRow]

    def row(self, benchmark: str) -> ScoreRow | None:
        return next((r for r in self.scores if r.benchmark == benchmark), None)


class ModelRecord(_Record):
    """Which weights answered: where they came from and what identifies them."""

    name: str
    registry_key: str | None = None
    hub_id: str | None = None
    path: str | None = None
    source: Literal["hub", "local", "offline", "endpoint", "completions"]
    revision: str | None = None
    fingerprint: str
    kind: str | None = None
    readme_rows: list[str] = Field(default_factory=list)


DataSource = Literal["hub", "mirror", "release", "download", "hub+download", "generated"]


class DataRecord(_Record):
    """Where a benchmark's items came from, and the fingerprint `compare` checks."""

    source: DataSource
    dataset_id: str
    path: str | None = None
    fingerprint: str
    revision: str | None = None
    derived_fewshot: bool


class BenchmarkRecord(_Record):
    """Everything about one benchmark of a run that moves its number."""

    OMIT_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"judge"})

    spec: dict[str, Any]
    task_file_sha256: str | None = None
    lm_eval_tasks: dict[str, Any]
    data: DataRecord
    n_scored: int = 0
    n_available: int = 0
    samples_per_subtask: dict[str, int] = Field(default_factory=dict)
    judge: dict[str, Any] | None = None


class ProtocolFile(_Record):
    file: str
    sha256: str


class Manifest(_Record):
    """`manifest.json`: everything a run was made from, enough to repeat and to explain it."""

    OMIT_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"judged_from"})

    schema_version: Literal[1] = SCHEMA_VERSION
    run_id: str
    created_utc: str
    command: list[str] = Field(default_factory=list)
    config: dict[str, Any]
    config_hash: str
    smoke: bool = False
    model: ModelRecord
    engine: dict[str, Any]
    request_cache: str | None = None
    sandbox: dict[str, Any] | None = None
    protocols: dict[str, ProtocolFile] = Field(default_factory=dict)
    benchmarks: dict[str, BenchmarkRecord]
    versions: dict[str, Any]
    timings: dict[str, Any]
    status: Literal["complete"] = "complete"
    judged_from: str | None = None
