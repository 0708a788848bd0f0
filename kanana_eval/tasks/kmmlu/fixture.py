"""A schema-exact stand-in for HAERAE-HUB/KMMLU (not to be had offline), for tests.

Schema (from copies of the dataset card found with the search tool; doubts marked "unsure"):
CSV, README has `configs:` only (features inferred from CSV). Per config (lm-eval dataset_name,
e.g. `Accounting`, `Korean-History`) three files `data/<Config>-{train,dev,test}.csv`; columns
question, answer (int 1-4; lm-eval target is answer-1), A, B, C, D, Category, Human Accuracy
(float). The hub renamed the Korean-History train file to lowercase
`data/korean-history-train.csv`; we copy that quirk (its dev/test names: unsure). Category
values: unsure (lm-eval does not read it); we write the subject's lm-eval supercategory (HUMSS,
STEM, Applied Science, Other). Here all 45 lm-eval subjects: Accounting and Korean-History
hand-written, the rest generated from Korean templates below. With pandas 3 the `datasets` CSV
reader types the text columns `large_string` (hub card: string). lm-eval loads the folder with
the config names its task YAMLs use (`datasets.load_dataset(str(DIR/<id>), name, split=...)`).

Regenerate the committed copy (tests/fixtures/hub/HAERAE-HUB/KMMLU) with
`python tests/fixtures/make_hub_fixtures.py`.
"""

from __future__ import annotations

import csv
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from kanana_eval.data.mirror.plan import SchemaFixture
from kanana_eval.data.mirror.writer import card_configs, write_card
from kanana_eval.tasks.kmmlu.fixture_items import (
    KMMLU_COLUMNS,
    KMMLU_DATA,
    KMMLU_SUBJECT_ITEMS,
    KMMLU_SUBJECTS,
    Item,
    mc_row,
)

DATASET_ID = "HAERAE-HUB/KMMLU"

_KOREA_FACTS: list[Item] = [
    ("대한민국의 수도는?", "서울", ["부산", "인천", "대구"]),
    ("대한민국의 화폐 단위는?", "원", ["엔", "위안", "달러"]),
    ("대한민국 국기의 이름은?", "태극기", ["일장기", "성조기", "오성홍기"]),
    ("대한민국의 나라꽃은?", "무궁화", ["진달래", "개나리", "장미"]),
    ("한글날은 몇 월 며칠인가?", "10월 9일", ["3월 1일", "8월 15일", "10월 3일"]),
    ("광복절은 몇 월 며칠인가?", "8월 15일", ["3월 1일", "6월 6일", "10월 3일"]),
    ("삼일절은 몇 월 며칠인가?", "3월 1일", ["5월 5일", "7월 17일", "12월 25일"]),
    ("현충일은 몇 월 며칠인가?", "6월 6일", ["5월 5일", "8월 15일", "10월 9일"]),
    ("어린이날은 몇 월 며칠인가?", "5월 5일", ["5월 8일", "5월 15일", "6월 6일"]),
    ("개천절은 몇 월 며칠인가?", "10월 3일", ["10월 9일", "8월 15일", "3월 1일"]),
    ("제헌절은 몇 월 며칠인가?", "7월 17일", ["6월 6일", "8월 15일", "10월 3일"]),
    ("대한민국에서 가장 높은 산은?", "한라산", ["설악산", "지리산", "북한산"]),
    ("대한민국에서 가장 큰 섬은?", "제주도", ["거제도", "강화도", "울릉도"]),
    ("남한에서 가장 긴 강은?", "낙동강", ["한강", "금강", "영산강"]),
    ("우리나라에서 가장 큰 무역항이 있는 도시는?", "부산", ["대전", "광주", "청주"]),
    ("한국의 전통 의상은?", "한복", ["기모노", "치파오", "사리"]),
    ("추석은 음력 몇 월 며칠인가?", "8월 15일", ["1월 1일", "5월 5일", "3월 3일"]),
    ("설날은 음력 몇 월 며칠인가?", "1월 1일", ["1월 15일", "8월 15일", "5월 5일"]),
    ("대한민국의 국가(國歌)는?", "애국가", ["아리랑", "도라지 타령", "강강술래"]),
    (
        "독도가 속한 행정 구역은?",
        "경상북도 울릉군",
        ["강원특별자치도 강릉시", "전라남도 여수시", "제주특별자치도 제주시"],
    ),
    (
        "중앙 행정 기관이 많이 옮겨 간 행정중심복합도시는?",
        "세종특별자치시",
        ["대전광역시", "울산광역시", "광주광역시"],
    ),
    (
        "배추 등을 소금에 절여 양념해 발효시킨 한국 음식은?",
        "김치",
        ["불고기", "비빔밥", "떡"],
    ),
    (
        "아궁이에 불을 때어 방바닥을 데우는 한국의 전통 난방 방식은?",
        "온돌",
        ["벽난로", "다다미", "에어컨"],
    ),
]

_SCIENCE_FACTS: list[Item] = [
    ("1기압에서 물이 끓는 온도는 섭씨 몇 도인가?", "100도", ["0도", "50도", "150도"]),
    ("1기압에서 물이 어는 온도는 섭씨 몇 도인가?", "0도", ["100도", "-10도", "4도"]),
    ("삼각형의 세 내각의 크기의 합은?", "180도", ["90도", "270도", "360도"]),
    ("사각형의 네 내각의 크기의 합은?", "360도", ["180도", "270도", "540도"]),
    ("직각은 몇 도인가?", "90도", ["45도", "180도", "360도"]),
    ("정육면체의 면은 모두 몇 개인가?", "6개", ["4개", "8개", "12개"]),
    (
        "지구가 태양 둘레를 한 바퀴 도는 데 걸리는 시간은 약 얼마인가?",
        "1년",
        ["1일", "1개월", "10년"],
    ),
    ("지구에서 가장 가까운 항성은?", "태양", ["북극성", "시리우스", "베텔게우스"]),
    ("빛의 삼원색이 아닌 것은?", "노랑", ["빨강", "초록", "파랑"]),
    ("소금의 주성분은?", "염화나트륨", ["탄산칼슘", "수산화나트륨", "황산구리"]),
    ("혈액을 온몸으로 내보내는 기관은?", "심장", ["폐", "간", "위"]),
    ("식물이 빛에너지를 이용해 양분을 만드는 작용은?", "광합성", ["호흡", "증산 작용", "소화"]),
    ("공기 중에 가장 많이 들어 있는 기체는?", "질소", ["산소", "이산화탄소", "아르곤"]),
    (
        "두 막대자석의 같은 극끼리 가까이 가져가면 어떻게 되는가?",
        "서로 밀어낸다",
        ["서로 끌어당긴다", "아무 힘도 작용하지 않는다", "자석의 성질을 잃는다"],
    ),
    ("다음 중 소수(素數)는?", "13", ["21", "27", "33"]),
    ("소수 0.5를 분수로 나타내면?", "1/2", ["1/5", "5/1", "2/5"]),
    ("다음 중 포유류는?", "고래", ["상어", "참치", "오징어"]),
    ("다음 중 무게의 단위가 아닌 것은?", "리터", ["그램", "킬로그램", "톤"]),
    ("혈액에서 산소를 운반하는 성분은?", "적혈구", ["백혈구", "혈소판", "혈장"]),
    ("달빛은 주로 무엇의 빛을 반사한 것인가?", "태양", ["지구", "화성", "북극성"]),
    ("물 분자 하나를 이루는 수소 원자는 몇 개인가?", "2개", ["1개", "3개", "4개"]),
    (
        "한 변의 길이가 3센티미터인 정사각형의 넓이는?",
        "9제곱센티미터",
        ["6제곱센티미터", "12제곱센티미터", "3제곱센티미터"],
    ),
    ("반지름이 5센티미터인 원의 지름은?", "10센티미터", ["2.5센티미터", "5센티미터", "25센티미터"]),
]

_WEEKDAYS = ["월요일", "화요일", "수요일", "목요일", "금요일", "토요일", "일요일"]

# from unit + particle, to unit, factor, wrong factors a careless solver would use
_UNITS: list[tuple[str, str, int, list[int]]] = [
    ("킬로미터는", "미터", 1000, [100, 10, 10000]),
    ("킬로그램은", "그램", 1000, [100, 10, 10000]),
    ("리터는", "밀리리터", 1000, [100, 10, 10000]),
    ("시간은", "분", 60, [100, 30, 600]),
    ("분은", "초", 60, [100, 30, 600]),
    ("미터는", "센티미터", 100, [10, 1000, 1]),
    ("센티미터는", "밀리미터", 10, [100, 1, 1000]),
    ("일은", "시간", 24, [12, 60, 48]),
]


def _numbers(correct: int, wrong: list[int], unit: str) -> tuple[str, list[str]]:
    """The correct number and the first three distinct positive wrong ones, with a unit."""
    picks: list[int] = []
    for value in wrong:
        if value > 0 and value != correct and value not in picks:
            picks.append(value)
    if len(picks) < 3:
        raise SystemExit(f"too few distinct wrong answers for {correct}: {wrong}")
    return f"{correct:,}{unit}", [f"{value:,}{unit}" for value in picks[:3]]


def _solved_problems(k: int, name: str, config: str) -> Item:
    a, b = 15 + (k * 7) % 40, 8 + (k * 5) % 23
    if k % 2 == 0:
        question = (
            f"'{name}' 문제집에서 어제 {a}문제, 오늘 {b}문제를 풀었다. "
            "이틀 동안 모두 몇 문제를 풀었는가?"
        )
        return (question, *_numbers(a + b, [a + b + 1, a + b - 1, a + b + 10, a - b], "문제"))
    question = (
        f"'{name}' 강의는 모두 {a + b}차시이고 그중 {b}차시를 들었다. 남은 강의는 몇 차시인가?"
    )
    return (question, *_numbers(a, [a + 1, a - 1, a + 2 * b, a + 10], "차시"))


def _seats(k: int, name: str, config: str) -> Item:
    a, b = 3 + k % 7, 4 + (k * 4) % 9
    question = f"'{name}' 실습실에는 {a}명씩 앉는 책상이 {b}개 있다. 모두 몇 명이 앉을 수 있는가?"
    return (question, *_numbers(a * b, [a + b, a * b + a, a * b - b, a * b + 10], "명"))


def _pass_rate(k: int, name: str, config: str) -> Item:
    total, percent = 20 * (5 + k % 16), [10, 20, 25, 50, 5, 30][k % 6]
    passed = total * percent // 100
    question = f"'{name}' 자격시험 응시자 {total}명 중 {percent}%가 합격했다. 합격자는 몇 명인가?"
    wrong = [total - passed, passed + total // 10, passed + percent, passed * 2]
    return (question, *_numbers(passed, wrong, "명"))


def _average(k: int, name: str, config: str) -> Item:
    low, step = 60 + k % 23, 3 + k % 6
    question = (
        f"'{name}' 쪽지 시험 세 번의 점수가 {low}점, {low + 2 * step}점, {low + step}점이다. "
        "세 점수의 평균은 몇 점인가?"
    )
    wrong = [low + step + 1, low + 2 * step, 3 * (low + step), low]
    return (question, *_numbers(low + step, wrong, "점"))


def _minutes(k: int, name: str, config: str) -> Item:
    hours, minutes = 1 + k % 5, 5 + (k * 11) % 50
    question = f"'{name}' 실습은 {hours}시간 {minutes}분 동안 진행된다. 모두 몇 분인가?"
    total = 60 * hours + minutes
    wrong = [100 * hours + minutes, 60 * hours, total + 60, hours + minutes]
    return (question, *_numbers(total, wrong, "분"))


def _unit_conversion(k: int, name: str, config: str) -> Item:
    source, target, factor, mistakes = _UNITS[k % len(_UNITS)]
    amount = 2 + (k * 4) % 9
    question = f"{amount}{source} 몇 {target}인가?"
    return (question, *_numbers(amount * factor, [amount * m for m in mistakes], target))


def _weekday(k: int, name: str, config: str) -> Item:
    start, days = k % 7, 3 + (k * 4) % 25
    if days % 7 == 0:
        days += 1
    question = f"오늘이 {_WEEKDAYS[start]}이라면 {days}일 뒤는 무슨 요일인가?"
    end = (start + days) % 7
    return (question, _WEEKDAYS[end], [_WEEKDAYS[(end + shift) % 7] for shift in (1, 6, 2)])


def _date_after(k: int, name: str, config: str) -> Item:
    start = date(2023, 1 + k % 11, 1 + (k * 5) % 28)
    days = 10 + (k * 9) % 40
    end = start + timedelta(days=days)
    question = f"2023년 {start.month}월 {start.day}일로부터 {days}일 뒤는 몇 월 며칠인가?"
    wrong = [end - timedelta(days=1), end + timedelta(days=1), end + timedelta(days=10)]
    return (question, f"{end.month}월 {end.day}일", [f"{d.month}월 {d.day}일" for d in wrong])


def _korea_fact(k: int, name: str, config: str) -> Item:
    return _KOREA_FACTS[(k * 5) % len(_KOREA_FACTS)]


def _science_fact(k: int, name: str, config: str) -> Item:
    return _SCIENCE_FACTS[(k * 7) % len(_SCIENCE_FACTS)]


def _english_name(k: int, name: str, config: str) -> Item:
    english = [subject.replace("-", " ") for subject, _, _ in KMMLU_SUBJECTS]
    wrong = [english[(k + shift) % len(english)] for shift in (1, 3, 7)]
    return (f"KMMLU에서 '{name}' 과목의 영어 이름은?", english[k], wrong)


_FAMILIES = [
    _solved_problems,
    _unit_conversion,
    _weekday,
    _korea_fact,
    _seats,
    _date_after,
    _science_fact,
    _pass_rate,
    _english_name,
    _average,
    _minutes,
]


def _kmmlu_row(item: Item, position: int, accuracy: float, category: str) -> dict[str, Any]:
    """A KMMLU row with the correct choice at `position` (0-3); refuses malformed items."""
    question, correct, wrong = item
    options = [*wrong[:position], correct, *wrong[position:]]
    if len(options) != 4 or len(set(options)) != 4 or not all(options):
        raise SystemExit(f"KMMLU item needs four distinct choices: {item}")
    if not any("\uac00" <= ch <= "\ud7a3" for ch in question):
        raise SystemExit(f"KMMLU question is not Korean: {question}")
    return mc_row(question, options, position + 1, accuracy, category)


def generated_kmmlu_subject(index: int) -> dict[str, list[dict[str, Any]]]:
    """train 1, dev 5, test 2 rows for subject `index` of KMMLU_SUBJECTS, the same on every run.

    Seven template families (consecutive in `_FAMILIES`, starting at the subject's index) fill
    train and dev and the last test row; the subject's own question is the first test row. The
    correct choice moves through A-D.
    """
    config, name, category = KMMLU_SUBJECTS[index]
    families = [_FAMILIES[(index + j) % len(_FAMILIES)] for j in range(7)]
    items = [family(index, name, config) for family in families]
    ordered = {
        "train": items[:1],
        "dev": items[1:6],
        "test": [KMMLU_SUBJECT_ITEMS[config], items[6]],
    }
    splits: dict[str, list[dict[str, Any]]] = {}
    slot = 0
    for split, split_items in ordered.items():
        rows = []
        for item in split_items:
            accuracy = round(0.3 + ((index * 7 + slot * 13) % 61) / 100, 2)
            rows.append(_kmmlu_row(item, (index + slot) % 4, accuracy, category))
            slot += 1
        splits[split] = rows
    return splits


def kmmlu_data() -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Every lm-eval KMMLU subject: the hand-written ones as they are, the rest generated."""
    return {
        config: KMMLU_DATA[config] if config in KMMLU_DATA else generated_kmmlu_subject(index)
        for index, (config, _, _) in enumerate(KMMLU_SUBJECTS)
    }


def kmmlu_file(config: str, split: str) -> str:
    """Relative path of a KMMLU CSV; the hub's Korean-History train file is lowercase."""
    if config == "Korean-History" and split == "train":
        return "data/korean-history-train.csv"
    return f"data/{config}-{split}.csv"


def write_kmmlu(folder: Path) -> None:
    """The hub layout at `folder`: three CSVs per subject and a card with `configs:` only."""
    config_splits: dict[str, list[tuple[str, str]]] = {}
    for config, splits in kmmlu_data().items():
        for split, rows in splits.items():
            path = folder / kmmlu_file(config, split)
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w", encoding="utf-8", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=KMMLU_COLUMNS, lineterminator="\n")
                writer.writeheader()
                writer.writerows(rows)
            config_splits.setdefault(config, []).append((split, kmmlu_file(config, split)))
    write_card(
        folder,
        dataset_info=None,
        configs=card_configs(config_splits, None),
        # The card text is part of the committed fixture (and of its fingerprint): kept as is.
        body="# KMMLU (kanana-eval test fixture)\n\nThe 45 subjects lm-eval's `kmmlu` group reads, "
        "in the hub layout. Accounting and Korean-History hold items written for tests (train 2, "
        "dev 5, test 3); the other subjects hold train 1, dev 5, test 2 items generated from "
        "Korean templates. See tests/fixtures/make_hub_fixtures.py.",
    )


FIXTURES = (SchemaFixture(DATASET_ID, f"hub/{DATASET_ID}", write_kmmlu),)
