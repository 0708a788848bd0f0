"""A schema-exact stand-in for HAERAE-HUB/HAE_RAE_BENCH (not to be had offline), for tests.

Schema (from copies of the dataset card found with the search tool; doubts marked "unsure"): the
hub redirects this id to HAE_RAE_BENCH_1.1. lm-eval reads `query` and `answer` ("(A)".."(E)") of
split test, config names general_knowledge, history, loan_words, rare_words,
standard_nomenclature. Columns query, options, answer, category (all strings, as the repo's
former loading script declared). Layout `<config>/test-00000-of-00001.parquet` (unsure: the
layout after the loading script was replaced by Parquet). The query text template below is ours,
and every question is written for the fixture.

Regenerate the committed copy (tests/fixtures/hub/HAERAE-HUB/HAE_RAE_BENCH) with
`python tests/fixtures/make_hub_fixtures.py`.
"""

from __future__ import annotations

from pathlib import Path

from kanana_eval.data.mirror.plan import SchemaFixture
from kanana_eval.data.mirror.writer import card_configs, write_card, write_parquet

DATASET_ID = "HAERAE-HUB/HAE_RAE_BENCH"
FEATURES_YAML = [
    {"name": name, "dtype": "string"} for name in ("query", "options", "answer", "category")
]
_LETTERS = "ABCDE"

ITEMS: dict[str, list[tuple[str, list[str], str]]] = {
    "general_knowledge": [
        ("대한민국의 수도는 어디인가?", ["부산", "서울", "인천", "대구", "광주"], "B"),
        ("음력 8월 15일에 지내는 한국의 명절은?", ["설날", "단오", "추석", "한식", "동지"], "C"),
        (
            "겨울을 앞두고 김치를 한꺼번에 담그는 일을 무엇이라 하는가?",
            ["김장", "차례", "성묘", "제사", "돌잔치"],
            "A",
        ),
        ("대한민국의 나라꽃은?", ["진달래", "개나리", "벚꽃", "무궁화", "목련"], "D"),
        ("한글날은 언제인가?", ["3월 1일", "6월 6일", "8월 15일", "10월 3일", "10월 9일"], "E"),
        ("한국의 전통 가옥을 이르는 말은?", ["한복", "한옥", "한식", "한지", "한우"], "B"),
    ],
    "history": [
        ("조선을 세운 인물은?", ["이성계", "정도전", "이방원", "왕건", "최영"], "A"),
        (
            "거북선이 활약한 전쟁은?",
            ["병자호란", "임진왜란", "6·25 전쟁", "청일 전쟁", "러일 전쟁"],
            "B",
        ),
        (
            "고려 때 금속 활자로 찍은 책으로, 현재 전하는 가장 오래된 것은?",
            ["훈민정음", "팔만대장경", "직지심체요절", "삼국유사", "동국정운"],
            "C",
        ),
        (
            "광복절은 무엇을 기념하는 날인가?",
            ["정부 수립", "한글 창제", "나라의 시작", "일제로부터의 해방", "헌법 제정"],
            "D",
        ),
        ("백제의 마지막 도읍은?", ["한성", "웅진", "경주", "평양", "사비"], "E"),
        ("신라의 도읍이었던 도시는?", ["경주", "공주", "부여", "개성", "한양"], "A"),
    ],
    "loan_words": [
        ("'레시피'를 다듬은 우리말은?", ["조리법", "식단표", "요리사", "식재료", "주방"], "A"),
        ("'힐링'을 다듬은 우리말은?", ["휴가", "운동", "치유", "여행", "명상"], "C"),
        ("'멘토'를 다듬은 우리말은?", ["친구", "조언자", "선배", "동료", "제자"], "B"),
        ("'팁'을 다듬은 우리말은?", ["요금", "정보지", "안내원", "도움말", "설명서"], "D"),
        ("'웰빙'을 다듬은 우리말은?", ["참살이", "건강식", "여가", "복지", "휴식"], "A"),
        ("'네티즌'을 다듬은 우리말은?", ["시민", "기자", "관리자", "사용자", "누리꾼"], "E"),
    ],
    "rare_words": [
        (
            "'윤슬'의 뜻은?",
            [
                "햇빛이나 달빛에 비치어 반짝이는 잔물결",
                "새벽에 끼는 안개",
                "봄에 부는 바람",
                "해 질 녘의 노을",
                "겨울밤의 서리",
            ],
            "A",
        ),
        (
            "'가랑비'의 뜻은?",
            [
                "굵게 내리는 비",
                "가늘게 내리는 비",
                "갑자기 쏟아지는 비",
                "오래 내리는 비",
                "눈과 섞인 비",
            ],
            "B",
        ),
        ("'미리내'의 뜻은?", ["무지개", "별똥별", "은하수", "초승달", "북두칠성"], "C"),
        (
            "'너울'의 뜻은?",
            ["잔잔한 호수", "맑은 시냇물", "좁은 골목", "바다의 크고 사나운 물결", "높은 산봉우리"],
            "D",
        ),
        (
            "'여우비'의 뜻은?",
            [
                "밤에만 내리는 비",
                "우박",
                "장마",
                "소나기 뒤의 무지개",
                "볕이 난 날 잠깐 오다가 그치는 비",
            ],
            "E",
        ),
        (
            "'그루잠'의 뜻은?",
            ["깨었다가 다시 든 잠", "낮에 자는 잠", "깊이 든 잠", "밤을 새우는 일", "꿈을 꾸는 잠"],
            "A",
        ),
    ],
    "standard_nomenclature": [
        (
            "'이메일'의 표준 우리말 용어는?",
            ["전자 우편", "전자 문서", "편지함", "우체국", "전보"],
            "A",
        ),
        ("'로그인'의 표준 우리말 용어는?", ["나가기", "접속", "등록", "저장", "검색"], "B"),
        (
            "'다운로드'의 표준 우리말 용어는?",
            ["올려받기", "옮기기", "내려받기", "지우기", "붙이기"],
            "C",
        ),
        ("'패스워드'의 표준 우리말 용어는?", ["아이디", "주소", "별명", "비밀번호", "인증서"], "D"),
        (
            "'홈페이지'의 표준 우리말 용어는?",
            ["게시판", "방명록", "누리집", "자료실", "블로그"],
            "C",
        ),
        (
            "'스크린도어'의 표준 우리말 용어는?",
            ["안전문", "자동문", "출입문", "비상구", "창문"],
            "A",
        ),
    ],
}


def haerae_row(config: str, question: str, options: list[str], letter: str) -> dict[str, str]:
    """One HAE-RAE row: the query embeds the five options; the answer is "(A)".."(E)"."""
    lines = "\n".join(f"({_LETTERS[i]}) {text}" for i, text in enumerate(options))
    query = (f"다음 질문에 알맞은 답을 고르세요.\n\n### 질문: {question}\n### 선택지:\n{lines}"
             "\n### 정답:")
    return {"query": query, "options": repr(options), "answer": f"({letter})", "category": config}


def write_haerae(folder: Path) -> None:
    """The hub layout at `folder`: one Parquet test shard per config and the card."""
    folder.mkdir(parents=True, exist_ok=True)
    infos, config_splits = [], {}
    for config, items in ITEMS.items():
        rows = [haerae_row(config, *item) for item in items]
        path = folder / config / "test-00000-of-00001.parquet"
        nbytes = write_parquet(rows, FEATURES_YAML, path)
        infos.append(
            {
                "config_name": config,
                "features": FEATURES_YAML,
                "splits": [{"name": "test", "num_bytes": nbytes, "num_examples": len(rows)}],
            }
        )
        config_splits[config] = [("test", f"{config}/test-*")]
    # The card text is part of the committed fixture (and of its fingerprint): kept as is.
    write_card(
        folder,
        dataset_info=infos,
        configs=card_configs(config_splits, None),
        body="# HAE-RAE Bench (kanana-eval test fixture)\n\nThe five configs lm-eval's `haerae` "
        "reads, 6 test items each, written for tests. See tests/fixtures/make_hub_fixtures.py.",
    )


FIXTURES = (SchemaFixture(DATASET_ID, f"hub/{DATASET_ID}", write_haerae),)
