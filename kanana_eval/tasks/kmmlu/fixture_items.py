"""KMMLU fixture items: the two hand-written subjects, and each other subject's own question.

Real KMMLU items are exam questions we cannot copy, so every question here is written for the
fixture (`kanana_eval/tasks/kmmlu/fixture.py` turns them into the hub's CSV files). Answers are
1-based as in the hub CSVs.
"""

from __future__ import annotations

from typing import Any

KMMLU_COLUMNS = ["question", "answer", "A", "B", "C", "D", "Category", "Human Accuracy"]


def mc_row(
    question: str, options: list[str], answer: int, accuracy: float, category: str = "HUMSS"
) -> dict[str, Any]:
    """One KMMLU row; answer is 1-based as in the hub CSVs."""
    row = {"question": question, "answer": answer, "Category": category, "Human Accuracy": accuracy}
    row.update(dict(zip("ABCD", options, strict=True)))
    return row


KMMLU_DATA: dict[str, dict[str, list[dict[str, Any]]]] = {
    "Accounting": {
        "train": [
            mc_row(
                "현금 및 현금성자산에 포함되지 않는 것은?",
                ["통화", "보통예금", "당좌예금", "장기대여금"],
                4,
                0.62,
            ),
            mc_row(
                "자본을 증가시키는 거래는?",
                ["배당금 지급", "유상증자", "자기주식 취득", "당기순손실 발생"],
                2,
                0.55,
            ),
        ],
        "dev": [
            mc_row(
                "재무상태표의 기본 등식으로 옳은 것은?",
                [
                    "자산 = 부채 + 자본",
                    "자산 = 부채 - 자본",
                    "자본 = 자산 + 부채",
                    "부채 = 자산 + 자본",
                ],
                1,
                0.81,
            ),
            mc_row(
                "다음 중 유동자산에 해당하는 것은?", ["건물", "토지", "매출채권", "특허권"], 3, 0.74
            ),
            mc_row(
                "감가상각을 하지 않는 자산은?", ["기계장치", "토지", "차량운반구", "비품"], 2, 0.69
            ),
            mc_row(
                "상품을 외상으로 판매했을 때 차변에 기록하는 계정은?",
                ["매입채무", "매출", "현금", "매출채권"],
                4,
                0.66,
            ),
            mc_row(
                "손익계산서에서 매출액에서 매출원가를 뺀 금액은?",
                ["매출총이익", "영업이익", "당기순이익", "법인세비용"],
                1,
                0.77,
            ),
        ],
        "test": [
            mc_row(
                "자산을 취득할 때 지급한 금액으로 기록하는 원칙은?",
                ["역사적 원가 원칙", "수익 인식 원칙", "대응 원칙", "보수주의 원칙"],
                1,
                0.58,
            ),
            mc_row(
                "선급비용은 재무상태표에서 어느 항목으로 분류되는가?",
                ["부채", "자본", "자산", "수익"],
                3,
                0.61,
            ),
            mc_row(
                "취득원가 1,000만 원, 잔존가치 100만 원, 내용연수 3년인 기계를 정액법으로 "
                "상각할 때 한 해의 감가상각비는?",
                ["300만 원", "333만 원", "250만 원", "900만 원"],
                1,
                0.49,
            ),
        ],
    },
    "Korean-History": {
        "train": [
            mc_row(
                "신라의 승려로 '왕오천축국전'을 남긴 인물은?",
                ["원효", "의상", "혜초", "자장"],
                3,
                0.52,
            ),
            mc_row(
                "조선 후기 실학자로 '목민심서'를 쓴 인물은?",
                ["정약용", "박지원", "유형원", "이익"],
                1,
                0.71,
            ),
        ],
        "dev": [
            mc_row("훈민정음을 창제한 조선의 왕은?", ["태조", "세종", "정조", "영조"], 2, 0.93),
            mc_row("고려를 세운 인물은?", ["왕건", "궁예", "견훤", "이성계"], 1, 0.84),
            mc_row("삼국을 통일한 나라는?", ["고구려", "백제", "신라", "가야"], 3, 0.88),
            mc_row(
                "1919년에 전국적으로 일어난 독립운동은?",
                ["갑신정변", "동학 농민 운동", "6·10 만세 운동", "3·1 운동"],
                4,
                0.9,
            ),
            mc_row(
                "대한민국 임시 정부가 처음 세워진 도시는?",
                ["상하이", "베이징", "도쿄", "충칭"],
                1,
                0.72,
            ),
        ],
        "test": [
            mc_row(
                "조선의 통치 기준이 된 법전은?",
                ["경국대전", "삼국사기", "동의보감", "목민심서"],
                1,
                0.68,
            ),
            mc_row(
                "임진왜란 때 한산도 대첩을 이끈 장군은?",
                ["권율", "김시민", "이순신", "곽재우"],
                3,
                0.86,
            ),
            mc_row(
                "고구려의 영토를 크게 넓혔고 그 업적이 비석에 새겨진 왕은?",
                ["장수왕", "광개토대왕", "소수림왕", "고국천왕"],
                2,
                0.63,
            ),
        ],
    },
}



# The generated subjects. Real KMMLU items are exam questions we cannot copy; the 43 subjects
# other than the two above get one hand-written question about the subject (first test item) and
# seven items drawn from a bank of Korean templates (arithmetic in a subject setting, unit
# conversion, calendar, facts about Korea, basic science, the subject's English name). Every
# choice is computed or listed so exactly one is right; `_kmmlu_row` refuses repeated options.
# Category: the lm-eval supercategory of the subject (its `kmmlu_<category>_tasks` tag), written
# the way the KMMLU paper names them (unsure whether the hub CSVs use these exact strings).

# (lm-eval dataset_name, Korean subject name, Category)
KMMLU_SUBJECTS: list[tuple[str, str, str]] = [
    ("Accounting", "회계", "HUMSS"),
    ("Agricultural-Sciences", "농업과학", "Other"),
    ("Aviation-Engineering-and-Maintenance", "항공정비", "Applied Science"),
    ("Biology", "생물학", "STEM"),
    ("Chemical-Engineering", "화학공학", "STEM"),
    ("Chemistry", "화학", "STEM"),
    ("Civil-Engineering", "토목공학", "STEM"),
    ("Computer-Science", "컴퓨터과학", "STEM"),
    ("Construction", "건설", "Other"),
    ("Criminal-Law", "형법", "HUMSS"),
    ("Ecology", "생태학", "STEM"),
    ("Economics", "경제학", "HUMSS"),
    ("Education", "교육학", "HUMSS"),
    ("Electrical-Engineering", "전기공학", "STEM"),
    ("Electronics-Engineering", "전자공학", "Applied Science"),
    ("Energy-Management", "에너지관리", "Applied Science"),
    ("Environmental-Science", "환경과학", "Applied Science"),
    ("Fashion", "패션", "Other"),
    ("Food-Processing", "식품가공", "Other"),
    ("Gas-Technology-and-Engineering", "가스기술", "Applied Science"),
    ("Geomatics", "측량학", "Applied Science"),
    ("Health", "보건", "Other"),
    ("Industrial-Engineer", "산업공학", "Applied Science"),
    ("Information-Technology", "정보기술", "STEM"),
    ("Interior-Architecture-and-Design", "실내건축", "Other"),
    ("Korean-History", "한국사", "HUMSS"),
    ("Law", "법학", "HUMSS"),
    ("Machine-Design-and-Manufacturing", "기계설계제작", "Applied Science"),
    ("Management", "경영학", "HUMSS"),
    ("Maritime-Engineering", "해양공학", "Applied Science"),
    ("Marketing", "마케팅", "Other"),
    ("Materials-Engineering", "재료공학", "STEM"),
    ("Math", "수학", "STEM"),
    ("Mechanical-Engineering", "기계공학", "STEM"),
    ("Nondestructive-Testing", "비파괴검사", "Applied Science"),
    ("Patent", "특허", "Other"),
    ("Political-Science-and-Sociology", "정치사회학", "HUMSS"),
    ("Psychology", "심리학", "HUMSS"),
    ("Public-Safety", "공공안전", "Other"),
    ("Railway-and-Automotive-Engineering", "철도자동차공학", "Applied Science"),
    ("Real-Estate", "부동산학", "Other"),
    ("Refrigerating-Machinery", "공조냉동기계", "Other"),
    ("Social-Welfare", "사회복지", "HUMSS"),
    ("Taxation", "세무", "HUMSS"),
    ("Telecommunications-and-Wireless-Technology", "무선통신", "Applied Science"),
]

# question, correct choice, three wrong choices
Item = tuple[str, str, list[str]]

KMMLU_SUBJECT_ITEMS: dict[str, Item] = {
    "Agricultural-Sciences": (
        "비료의 3요소에 속하지 않는 것은?",
        "나트륨",
        ["질소", "인산", "칼리"],
    ),
    "Aviation-Engineering-and-Maintenance": (
        "비행기 날개에서 기체를 위로 떠오르게 하는 힘은?",
        "양력",
        ["항력", "추력", "중력"],
    ),
    "Biology": (
        "세포 호흡으로 ATP를 주로 만드는 세포 소기관은?",
        "미토콘드리아",
        ["리보솜", "골지체", "리소좀"],
    ),
    "Chemical-Engineering": (
        "혼합 액체를 끓는점의 차이를 이용해 분리하는 단위 조작은?",
        "증류",
        ["여과", "흡착", "건조"],
    ),
    "Chemistry": ("물의 화학식은?", "H2O", ["CO2", "NaCl", "O2"]),
    "Civil-Engineering": (
        "콘크리트를 만들 때 물과 반응해 골재를 굳게 결합시키는 재료는?",
        "시멘트",
        ["유리", "고무", "목재"],
    ),
    "Computer-Science": ("2진수 1010을 10진수로 나타내면?", "10", ["8", "12", "5"]),
    "Construction": (
        "철근콘크리트 구조에서 인장력을 주로 부담하는 재료는?",
        "철근",
        ["콘크리트", "모래", "자갈"],
    ),
    "Criminal-Law": (
        "죄형법정주의에 따르면 범죄와 형벌은 무엇으로 미리 정해야 하는가?",
        "법률",
        ["관습", "판사의 재량", "행정 명령"],
    ),
    "Ecology": (
        "생태계에서 광합성으로 양분을 스스로 만드는 생물을 이르는 말은?",
        "생산자",
        ["소비자", "분해자", "포식자"],
    ),
    "Economics": (
        "수요가 변하지 않을 때 공급이 늘어나면 일반적으로 가격은 어떻게 되는가?",
        "내려간다",
        ["오른다", "변하지 않는다", "두 배가 된다"],
    ),
    "Education": (
        "학습자가 경험을 통해 지식을 스스로 구성한다고 보는 학습 이론은?",
        "구성주의",
        ["행동주의", "본질주의", "항존주의"],
    ),
    "Electrical-Engineering": (
        "저항이 10옴인 도선에 2암페어의 전류가 흐를 때 도선 양 끝의 전압은?",
        "20볼트",
        ["5볼트", "12볼트", "0.2볼트"],
    ),
    "Electronics-Engineering": (
        "교류를 직류로 바꾸는 회로는?",
        "정류 회로",
        ["증폭 회로", "발진 회로", "변조 회로"],
    ),
    "Energy-Management": (
        "다음 중 재생에너지에 해당하는 것은?",
        "태양광",
        ["석탄", "석유", "천연가스"],
    ),
    "Environmental-Science": (
        "화석 연료를 태울 때 많이 나오는 대표적인 온실가스는?",
        "이산화탄소",
        ["산소", "질소", "아르곤"],
    ),
    "Fashion": ("면직물의 원료가 되는 식물은?", "목화", ["누에고치", "양털", "석유"]),
    "Food-Processing": (
        "식품을 가열해 해로운 미생물을 죽이는 처리를 무엇이라 하는가?",
        "살균",
        ["발효", "숙성", "염장"],
    ),
    "Gas-Technology-and-Engineering": (
        "액화천연가스(LNG)로 공급되는 도시가스의 주성분은?",
        "메탄",
        ["프로판", "수소", "산소"],
    ),
    "Geomatics": (
        "지도에서 해발 높이가 같은 지점을 이은 선은?",
        "등고선",
        ["경선", "위선", "등압선"],
    ),
    "Health": (
        "건강한 성인의 정상 체온으로 가장 알맞은 것은?",
        "약 36.5도",
        ["약 30도", "약 40도", "약 42도"],
    ),
    "Industrial-Engineer": (
        "작업을 관찰해 한 단위 작업에 걸리는 표준 시간을 정하는 기법은?",
        "시간 연구",
        ["재고 관리", "품질 인증", "회계 감사"],
    ),
    "Information-Technology": (
        "웹 페이지의 구조를 작성하는 데 쓰이는 표시 언어는?",
        "HTML",
        ["SQL", "JPEG", "TCP"],
    ),
    "Interior-Architecture-and-Design": (
        "색의 3속성에 속하지 않는 것은?",
        "질감",
        ["색상", "명도", "채도"],
    ),
    "Law": (
        "대한민국 법체계에서 가장 상위에 있는 법은?",
        "헌법",
        ["법률", "대통령령", "조례"],
    ),
    "Machine-Design-and-Manufacturing": (
        "톱니를 서로 맞물려 두 축 사이에 회전 동력을 전달하는 기계 요소는?",
        "기어",
        ["볼트", "리벳", "스프링"],
    ),
    "Management": (
        "기업의 강점, 약점, 기회, 위협을 함께 분석하는 기법은?",
        "SWOT 분석",
        ["손익분기점 분석", "PERT", "ABC 분석"],
    ),
    "Maritime-Engineering": (
        "배가 물에 뜰 수 있게 물이 위쪽으로 떠받치는 힘은?",
        "부력",
        ["마찰력", "자기력", "탄성력"],
    ),
    "Marketing": (
        "마케팅 믹스 4P에 속하지 않는 것은?",
        "사람(People)",
        ["제품(Product)", "가격(Price)", "유통(Place)"],
    ),
    "Materials-Engineering": (
        "철에 탄소를 소량 넣어 만든 합금은?",
        "강철",
        ["청동", "황동", "두랄루민"],
    ),
    "Math": (
        "원의 둘레와 지름의 비를 나타내는 수는?",
        "원주율",
        ["자연상수", "황금비", "허수 단위"],
    ),
    "Mechanical-Engineering": (
        "연료를 태워 얻은 열에너지를 기계적인 일로 바꾸는 장치는?",
        "열기관",
        ["변압기", "축전기", "저항기"],
    ),
    "Nondestructive-Testing": (
        "초음파를 보내 재료를 손상하지 않고 내부 결함을 찾는 검사는?",
        "초음파 탐상 검사",
        ["인장 시험", "경도 시험", "충격 시험"],
    ),
    "Patent": (
        "우리나라 특허권의 존속기간은 원칙적으로 특허출원일 후 몇 년이 되는 날까지인가?",
        "20년",
        ["10년", "15년", "50년"],
    ),
    "Political-Science-and-Sociology": (
        "입법권, 행정권, 사법권을 나누어 서로 견제하게 하는 원리는?",
        "권력 분립",
        ["지방 자치", "복수 정당제", "직접 민주제"],
    ),
    "Psychology": (
        "파블로프의 개 실험으로 설명되는 학습은?",
        "고전적 조건 형성",
        ["조작적 조건 형성", "관찰 학습", "통찰 학습"],
    ),
    "Public-Safety": (
        "우리나라에서 화재나 응급 환자가 생겼을 때 신고하는 전화번호는?",
        "119",
        ["112", "114", "1330"],
    ),
    "Railway-and-Automotive-Engineering": (
        "자동차 엔진의 냉각수를 공기로 식히는 장치는?",
        "라디에이터",
        ["변속기", "브레이크", "점화 플러그"],
    ),
    "Real-Estate": ("토지와 그 정착물을 이르는 말은?", "부동산", ["동산", "유가증권", "채권"]),
    "Refrigerating-Machinery": (
        "냉동 사이클에서 냉매가 주위의 열을 흡수하며 증발하는 장치는?",
        "증발기",
        ["압축기", "응축기", "팽창 밸브"],
    ),
    "Social-Welfare": (
        "국민연금이나 건강보험처럼 보험의 방식으로 운영되는 사회 보장 제도는?",
        "사회 보험",
        ["공공 부조", "사회 서비스", "자선 사업"],
    ),
    "Taxation": ("우리나라 부가가치세의 기본 세율은?", "10%", ["5%", "15%", "20%"]),
    "Telecommunications-and-Wireless-Technology": (
        "휴대 전화의 무선 통신에 쓰이는 파동은?",
        "전파",
        ["음파", "초음파", "지진파"],
    ),
}
