"""MT-Bench / KoMT-Bench single-answer grading: the pure part of FastChat's llm_judge.

Everything here is deterministic and offline; the HTTP judge client and the data loader live
elsewhere. What is reproduced, and from where (FastChat 0.2.36, `fastchat/llm_judge/`):

- routing (`gen_judgment.py`, single mode): questions of NEED_REF_CATS are judged with
  `single-math-v1` (turn 1) / `single-math-v1-multi-turn` (turn 2) and the reference answer,
  every other question with `single-v1` / `single-v1-multi-turn`; turn 2 only for questions
  with exactly two turns;
- the judge's user prompt (`common.run_judge_single`): the prompt record's `prompt_template`
  filled by `str.format` with question/answer (turn 1) or question_1/2 and answer_1/2 (turn 2),
  plus ref_answer_1 (and ref_answer_2 on turn 2) for reference-based prompts; the system
  message is the record's `system_prompt` (`Conversation.to_openai_api_messages`);
- the score (`run_judge_single`): first `[[x]]`, else first `[x]`, read with `ast.literal_eval`;
  no match = -1, which `show_result.py` drops;
- aggregation (`show_result.display_result_single`): mean over judged turn-1 rows, over judged
  turn-2 rows, and over all judged rows (not the mean of the two turn means).

KoMT-Bench (LG-AI-EXAONE/KoMT-Bench, `model_judgment/detector.py`) adds an optional penalty:
score -> sqrt(score) when the answer of that turn is not detected as Korean; questions 138 and
140 (JSON answers) are exempt and -1 scores are left alone. See LanguagePenalty for how our
detector differs from theirs.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from kanana_eval.core.errors import ConfigError, DataUnavailableError, ResultsError
from kanana_eval.results.records import Item
from kanana_eval.scoring.base import mean_stderr

# FastChat llm_judge/common.py NEED_REF_CATS: judged against a reference answer.
NEED_REF_CATEGORIES: tuple[str, ...] = ("math", "reasoning", "coding", "arena-hard-200")

# FastChat gen_judgment.make_judge_single: (reference-based?, turn) -> judge prompt name.
PROMPT_NAMES: dict[tuple[bool, int], str] = {
    (False, 1): "single-v1",
    (True, 1): "single-math-v1",
    (False, 2): "single-v1-multi-turn",
    (True, 2): "single-math-v1-multi-turn",
}

# FastChat common.py one_score_pattern / one_score_pattern_backup.
_SCORE = re.compile(r"\[\[(\d+\.?\d*)\]\]")
_SCORE_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")

# The protocol's rating scale: every FastChat and KoMT-Bench single-grading prompt asks for "a
# scale of 1 to 10". FastChat keeps whatever number it reads ([[15]] counts as 15, [[0]] as 0);
# we treat a rating outside this range as unparsable (dropped and counted in `n_dropped`).
RATING_RANGE: tuple[float, float] = (1.0, 10.0)

# FastChat's marker for an unparsable judgment in *_single.jsonl (dropped by show_result).
FASTCHAT_UNPARSABLE = -1

VERDICTS: tuple[str, ...] = ("judged", "unparsable", "unjudged")


@dataclass(frozen=True)
class JudgeTask:
    """One judgment to make: a (question, turn) with its rendered judge prompt."""

    question_id: int
    turn: int
    category: str
    prompt_name: str
    system_prompt: str
    user_prompt: str

    def messages(self) -> tuple[dict[str, str], ...]:
        """Chat messages as FastChat's conv.to_openai_api_messages() builds them for the judge."""
        system = ({"role": "system", "content": self.system_prompt},) if self.system_prompt else ()
        return (*system, {"role": "user", "content": self.user_prompt})


def _prompts_by_name(judge_prompts: Mapping[str, dict] | Iterable[dict]) -> dict[str, dict]:
    """Accept FastChat's load_judge_prompts dict or the raw records of judge_prompts.jsonl."""
    if isinstance(judge_prompts, Mapping):
        return dict(judge_prompts)
    return {record["name"]: record for record in judge_prompts}


def _judge_prompt(prompts: dict[str, dict], name: str) -> dict:
    """The named prompt, checked to be a single-grading prompt with FastChat's one output format."""
    record = prompts.get(name)
    if record is None:
        raise ConfigError(f"judge prompts lack '{name}' (have: {', '.join(sorted(prompts))})")
    if record.get("type") != "single" or record.get("output_format") != "[[rating]]":
        raise ConfigError(
            f"judge prompt '{name}' is not single-answer grading with [[rating]] output")
    return record


def _reference_turns(references: Mapping[Any, dict], question_id: int) -> list[Any]:
    """Turns of the reference answer for a question (FastChat: ref['choices'][0]['turns'])."""
    ref = references.get(question_id, references.get(str(question_id)))
    if ref is None:
        raise DataUnavailableError(f"no reference answer for question {question_id}")
    return ref["choices"][0]["turns"]


def _format_fields(question: dict, answer: Sequence[str], turn: int, ref: list[Any] | None) -> dict:
    """The str.format fields of common.run_judge_single for one turn."""
    if turn == 1:
        fields: dict[str, Any] = {"question": question["turns"][0], "answer": answer[0]}
    else:
        fields = {"question_1": question["turns"][0], "question_2": question["turns"][1],
                  "answer_1": answer[0], "answer_2": answer[1]}
    if ref is not None:
        fields["ref_answer_1"] = ref[0]
        if turn == 2:
            fields["ref_answer_2"] = ref[1]
    return fields


def judge_tasks(
    questions: Sequence[dict],
    answers: Mapping[int, Sequence[str]],
    judge_prompts: Mapping[str, dict] | Iterable[dict],
    references: Mapping[Any, dict],
) -> list[JudgeTask]:
    """FastChat gen_judgment single mode as a list of tasks, ordered by question then turn.

    Every question needs an answer (FastChat's check_data asserts it); pass only the questions
    that were answered. Reference-category questions need a reference answer.
    """
    prompts = _prompts_by_name(judge_prompts)
    tasks = []
    for question in questions:
        qid = question["question_id"]
        answer = answers.get(qid)
        n_turns = 2 if len(question["turns"]) == 2 else 1
        if answer is None or len(answer) < n_turns:
            raise ConfigError(f"question {qid}: expected {n_turns} answer turn(s), got "
                              f"{0 if answer is None else len(answer)}")
        ref_based = question["category"] in NEED_REF_CATEGORIES
        ref = _reference_turns(references, qid) if ref_based else None
        for turn in range(1, n_turns + 1):
            record = _judge_prompt(prompts, PROMPT_NAMES[(ref_based, turn)])
            user_prompt = record["prompt_template"].format(
                **_format_fields(question, answer, turn, ref))
            tasks.append(JudgeTask(question_id=qid, turn=turn, category=question["category"],
                                   prompt_name=record["name"],
                                   system_prompt=record["system_prompt"],
                                   user_prompt=user_prompt))
    return tasks


def parse_score(judgment: str) -> float | None:
    """The rating FastChat reads: first [[x]], else first [x]; None where FastChat records -1.

    FastChat evaluates the match with ast.literal_eval, which raises on a leading zero ("[[08]]")
    and would abort its run; we read such a number with float() instead.
    """
    match = _SCORE.search(judgment) or _SCORE_BACKUP.search(judgment)
    if match is None:
        return None
    text = match.group(1)
    try:
        return float(ast.literal_eval(text))
    except (ValueError, SyntaxError):
        return float(text)


def read_rating(judgment: str, valid_range: tuple[float, float] = RATING_RANGE,
                ) -> tuple[float | None, float | None]:
    """(rating, rejected): FastChat's `parse_score` kept only inside `valid_range`.

    A number read but outside the range is returned as `rejected` with rating None, so the
    judgment counts as unparsable (this departs from FastChat, which would score it).
    """
    value = parse_score(judgment)
    if value is None:
        return None, None
    low, high = valid_range
    if not low <= value <= high:
        return None, value
    return value, None


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


@dataclass(frozen=True)
class LanguagePenalty:
    """KoMT-Bench's square-root penalty for answers not written in Korean (an explicit option).

    Upstream detects the language with mediapipe's language detector (max_results=2) and keeps
    the language of the LAST detection in its loop, i.e. the second most probable language
    whenever two are returned. We take py3langid's single most probable language of the turn's
    answer instead, so an answer upstream would flag through its runner-up language is not
    penalized here. Empty answers have no Korean and are penalized (upstream: no detection,
    also penalized).
    """

    exempt_question_ids: tuple[int, ...] = (138, 140)
    target_language: str = "ko"

    def language(self, text: str) -> str:
        """py3langid's most probable language code for the text."""
        import py3langid  # noqa: PLC0415 - heavy: py3langid's model, KoMT penalty only

        return str(py3langid.classify(text)[0])

    def apply(self, question_id: int, answer: str, score: float) -> tuple[float, dict | None]:
        """(final score, penalty record or None); -1/negative scores untouched as upstream."""
        if question_id in self.exempt_question_ids or score < 0:
            return score, None
        lang = self.language(answer)
        if lang == self.target_language:
            return score, None
        return math.sqrt(score), {"language": lang, "raw": score}

    def describe(self) -> dict:
        """What the results record about the penalty, detector version included."""
        return {
            "rule": (f"score -> sqrt(score) when the answer of the turn is not detected as "
                     f"'{self.target_language}'; exempt questions untouched; unparsable judgments "
                     "are dropped before any penalty"),
            "source": "LG-AI-EXAONE/KoMT-Bench FastChat/fastchat/llm_judge/data/mt_bench/"
                      "model_judgment/detector.py",
            "detector": {"name": "py3langid", "version": _package_version("py3langid"),
                         "decision": "most probable language (upstream: mediapipe, last of up to 2 "
                                     "detections)"},
            "target_language": self.target_language,
            "exempt_question_ids": list(self.exempt_question_ids),
        }


def judged_item(
    benchmark: str,
    task: JudgeTask,
    *,
    prompt: str,
    output: str,
    target: Any,
    temperature: float,
    judge_model: str,
    judgment: str | None,
    attempts: int,
    penalty: LanguagePenalty | None = None,
) -> Item:
    """The schema-v1 item record of one judged turn (judgment None = the judge never answered)."""
    raw, rejected = read_rating(judgment) if judgment is not None else (None, None)
    score, applied = raw, None
    if raw is not None and penalty is not None:
        score, applied = penalty.apply(task.question_id, output, raw)
    verdict = "unjudged" if judgment is None else ("unparsable" if raw is None else "judged")
    return Item(
        benchmark=benchmark, item_id=str(task.question_id), subtask=task.category,
        turn=task.turn, prompt=prompt, output=output, extracted=None,
        target=None if target is None else str(target), score=score, verdict=verdict,
        details={
            "question_id": task.question_id, "category": task.category, "temperature": temperature,
            "judge": {"model": judge_model, "prompt_name": task.prompt_name,
                      "user_prompt": task.user_prompt, "judgment": judgment, "attempts": attempts,
                      "raw_score": raw, "rejected_rating": rejected, "penalty": applied},
        },
    )


def _question_id(item: Item) -> int:
    return int((item.details or {}).get("question_id", item.item_id))


def _category(item: Item) -> str:
    return (item.details or {}).get("category") or item.subtask or ""


def _cluster_stderr(rows: Sequence[tuple[int, float]]) -> float | None:
    """Stderr of the mean over rows with questions as the sampled units.

    A question's two turns are not independent (turn 2 continues turn 1), so the rows are
    clustered by question: with S_q the question's judged-score sum, T_q its judged turns,
    r the overall mean and tbar = mean T, z_q = r + (S_q - r T_q) / tbar has mean r, and the
    stderr is the sample std of z over sqrt(#questions). With both turns judged everywhere z_q
    is simply the question's mean score.
    """
    if not rows:
        return None
    sums: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for qid, score in rows:
        sums[qid][0] += score
        sums[qid][1] += 1
    r = sum(s for _, s in rows) / len(rows)
    tbar = len(rows) / len(sums)
    return mean_stderr([r + (s - r * t) / tbar for s, t in sums.values()])[1]


def summarize(items: Sequence[Item]) -> dict[str, Any]:
    """FastChat show_result (single mode) on the judged items, plus per-category means.

    Items whose verdict is not "judged" are dropped, as FastChat drops score -1, and counted.
    """
    judged = [i for i in items if i.verdict == "judged"]
    unknown = {i.verdict for i in items} - set(VERDICTS)
    if unknown:
        raise ResultsError(f"judge items with unknown verdict(s): {', '.join(sorted(unknown))}")
    by_turn: dict[int, list[float]] = defaultdict(list)
    by_category: dict[str, list[float]] = defaultdict(list)
    for item in judged:
        by_turn[int(item.turn or 0)].append(float(item.score or 0.0))
        by_category[_category(item)].append(float(item.score or 0.0))
    scores = [float(i.score or 0.0) for i in judged]
    return {
        "overall": mean_stderr(scores)[0],
        "turn_1": mean_stderr(by_turn[1])[0],
        "turn_2": mean_stderr(by_turn[2])[0],
        "categories": {cat: {"value": mean_stderr(v)[0], "n": len(v)}
                       for cat, v in sorted(by_category.items())},
        "n_judged": len(judged),
        "n_dropped": len(items) - len(judged),
        "n_unparsable": sum(i.verdict == "unparsable" for i in items),
        "n_unjudged": sum(i.verdict == "unjudged" for i in items),
        "stderr": _cluster_stderr([(_question_id(i), float(i.score or 0.0)) for i in judged]),
    }


def _tstamp(*sources: dict | None) -> float:
    """The first recorded tstamp among the sources, 0 when none (keeps exports deterministic)."""
    for source in sources:
        if source and source.get("tstamp") is not None:
            return source["tstamp"]
    return 0


def _turns_by_question(items: Iterable[Item]) -> dict[int, dict[int, Item]]:
    """{question_id: {turn: item}}, refusing duplicates."""
    grouped: dict[int, dict[int, Item]] = defaultdict(dict)
    for item in items:
        qid, turn = _question_id(item), int(item.turn or 0)
        if turn in grouped[qid]:
            raise ResultsError(f"question {qid} turn {turn} appears twice in the items")
        grouped[qid][turn] = item
    return grouped


def answer_id(model_id: str, question_id: int) -> str:
    """A stable stand-in for FastChat's random shortuuid answer_id (22 characters)."""
    return hashlib.sha256(f"{model_id}\0{question_id}".encode()).hexdigest()[:22]


def export_fastchat_answers(items: Iterable[Item], model_id: str) -> list[dict]:
    """FastChat model_answer/<model_id>.jsonl records, sorted by question_id as FastChat does."""
    records = []
    for qid, turns in sorted(_turns_by_question(items).items()):
        if sorted(turns) != list(range(1, len(turns) + 1)):
            raise ResultsError(f"question {qid}: answer turns {sorted(turns)} are not 1..n")
        ordered = [turns[t] for t in sorted(turns)]
        last = ordered[-1]
        records.append({
            "question_id": qid, "answer_id": answer_id(model_id, qid), "model_id": model_id,
            "choices": [{"index": 0, "turns": [i.output for i in ordered]}],
            "tstamp": _tstamp(last.details, last.model_extra),
        })
    return records


def export_fastchat_judgments(items: Iterable[Item], model_id: str, judge_model: str,
                              ) -> list[dict]:
    """FastChat model_judgment/<judge>_single.jsonl records; unjudged turns have no record.

    `score` is the item's final score (after any KoMT penalty, as KoMT's *_single_final.jsonl),
    -1 when the judgment was unparsable.
    """
    records = []
    for qid, turns in sorted(_turns_by_question(items).items()):
        for turn, item in sorted(turns.items()):
            if item.verdict == "unjudged":
                continue
            judge = (item.details or {}).get("judge") or {}
            score = item.score if item.verdict == "judged" else FASTCHAT_UNPARSABLE
            records.append({
                "question_id": qid, "model": model_id,
                "judge": [judge_model, judge.get("prompt_name")],
                "user_prompt": judge.get("user_prompt"), "judgment": judge.get("judgment"),
                "score": score, "turn": turn,
                "tstamp": _tstamp(judge, item.details, item.model_extra),
            })
    return records


def answers_from_fastchat(records: Iterable[dict]) -> dict[int, list[str]]:
    """{question_id: [a1, a2]} from FastChat model_answer records (a FastChat answer file)."""
    return {r["question_id"]: list(r["choices"][0]["turns"]) for r in records}


def write_jsonl_records(path: Path, records: Iterable[dict]) -> None:
    """Write JSON lines (UTF-8, Korean unescaped) atomically, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def read_jsonl_records(path: Path) -> list[dict]:
    """Read a JSON-lines file such as FastChat's answer or judgment files."""
    try:
        with Path(path).open(encoding="utf-8") as src:
            return [json.loads(line) for line in src if line.strip()]
    except (OSError, json.JSONDecodeError) as exc:
        raise ResultsError(f"cannot read JSON lines from {path}: {exc}") from exc
