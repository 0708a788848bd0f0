"""The project's own filler: plain English and Korean sentences, licence-free, never repeated.

Each sentence is one combination of five word lists (who, did what, to what, where, when),
written for this project. The k-th sentence of a haystack is combination `(a*k + b) mod N` in
mixed radix, with `a` coprime to N: distinct k give distinct combinations, so no sentence
repeats until N sentences (millions; a 128K-token haystack needs about ten thousand). The seed
picks `a` and `b`. No word list holds a digit or a needle key, so the needle is the only number
and the only mention of its key in a haystack.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

# English: "{who} {did} {what} {where} {when}."
EN_WHO = (
    "The old miller", "A young painter", "The quiet baker", "A tired sailor", "The village doctor",
    "A curious student", "The night guard", "A patient gardener", "The head librarian",
    "A travelling tailor", "The shepherd's daughter", "A retired teacher", "The ferry captain",
    "A careful potter", "The mountain guide", "A busy carpenter", "The young monk",
    "A cheerful weaver", "The lighthouse keeper", "A shy violinist", "The orchard owner",
    "A stubborn goatherd", "The market cook", "A wandering poet", "The bridge builder",
    "A sleepy clerk", "The river boatman", "A proud blacksmith", "The tea merchant",
    "A clumsy apprentice", "The forest ranger", "A kind nurse", "The glass blower",
    "A nervous actor", "The stable boy", "A thoughtful mapmaker", "The bell ringer",
    "A silent hunter", "The inn keeper", "A restless inventor",
)
EN_DID = (
    "repaired", "painted", "carried", "found", "cleaned", "measured", "described", "wrapped",
    "sketched", "polished", "hid", "returned", "borrowed", "sorted", "examined", "lifted",
    "counted the marks on", "wrote a letter about", "sang softly to", "forgot about",
    "argued over", "admired", "tied a ribbon around", "dropped", "studied", "packed away",
    "dusted", "traded", "rebuilt", "photographed",
)
EN_WHAT = (
    "a wooden gate", "an old lantern", "a basket of pears", "a torn map", "the copper kettle",
    "a pair of boots", "a blue umbrella", "the broken clock", "a jar of honey", "a fishing net",
    "the garden bench", "a stack of letters", "a silver spoon", "the iron key", "a woollen scarf",
    "a paper kite", "the stone bowl", "a sack of flour", "the painted door", "a small drum",
    "a bundle of reeds", "the family portrait", "a leather saddle", "a crate of apples",
    "the narrow ladder", "a glass bottle", "a velvet curtain", "the rusty anchor",
    "a cedar chest", "a bowl of plums", "the feather pillow", "a brass compass",
    "a roll of linen", "the oak table", "a clay whistle", "a crooked chair", "the tin soldier",
    "a bag of chestnuts", "the faded flag", "a spool of thread",
)
EN_WHERE = (
    "near the river", "behind the chapel", "in the crowded square", "beside the well",
    "under the old bridge", "at the edge of the forest", "in a narrow alley", "by the harbour",
    "on the hill road", "inside the barn", "next to the bakery", "in the quiet courtyard",
    "along the canal", "beneath the willow", "at the train platform", "in the empty theatre",
    "on the windy cliff", "beside the vegetable field", "in the attic", "near the salt marsh",
    "behind the school", "at the crossroads", "in the reading room", "on the ferry deck",
    "by the stone wall", "inside the greenhouse", "near the pottery kiln", "in the orchard",
    "under the market awning", "at the mill pond",
)
EN_WHEN = (
    "at dawn", "before breakfast", "late in the evening", "during the storm", "on a cold morning",
    "after the harvest", "in the early spring", "while it snowed", "at noon",
    "just before sunset", "on a foggy afternoon", "after the festival", "in the middle of winter",
    "when the bells rang", "on a humid night", "before the guests arrived", "in late autumn",
    "as the tide turned", "after a long journey", "on the first warm day",
)

# Korean: "{when} {who} {where} {what} {did}."  (particles written into the words)
KO_WHEN = (
    "새벽에", "아침 식사 전에", "늦은 저녁에", "폭풍이 치던 날에", "추운 아침에",
    "추수가 끝난 뒤에", "이른 봄에", "눈이 내리는 동안", "한낮에", "해가 지기 직전에",
    "안개 낀 오후에", "축제가 끝난 뒤에", "한겨울에", "종이 울릴 때", "무더운 밤에",
    "손님이 오기 전에", "늦가을에", "물때가 바뀔 무렵", "긴 여행을 마친 뒤에",
    "처음으로 따뜻한 날에",
)
KO_WHO = (
    "늙은 방앗간 주인이", "젊은 화가가", "조용한 제빵사가", "지친 선원이", "마을 의사가",
    "호기심 많은 학생이", "밤 경비원이", "참을성 있는 정원사가", "도서관장이",
    "떠돌이 재단사가", "양치기의 딸이", "은퇴한 선생님이", "나룻배 선장이", "꼼꼼한 도공이",
    "산악 안내인이", "바쁜 목수가", "젊은 스님이", "명랑한 베 짜는 사람이", "등대지기가",
    "수줍은 바이올린 연주자가", "과수원 주인이", "고집 센 염소지기가", "시장 요리사가",
    "떠돌이 시인이", "다리를 놓는 사람이", "졸린 서기가", "강 뱃사공이",
    "자부심 강한 대장장이가", "차 상인이", "서투른 견습생이", "산림 감시원이",
    "친절한 간호사가", "유리 공예가가", "긴장한 배우가", "마구간 소년이",
    "생각 깊은 지도 제작자가", "종지기가", "말 없는 사냥꾼이", "여관 주인이",
    "쉬지 않는 발명가가",
)
KO_WHERE = (
    "강가에서", "예배당 뒤에서", "붐비는 광장에서", "우물 옆에서", "낡은 다리 아래에서",
    "숲 가장자리에서", "좁은 골목에서", "항구 옆에서", "언덕길에서", "헛간 안에서",
    "빵집 옆에서", "조용한 안뜰에서", "운하를 따라", "버드나무 아래에서", "기차 승강장에서",
    "텅 빈 극장에서", "바람 부는 절벽에서", "채소밭 옆에서", "다락방에서", "소금 늪 근처에서",
    "학교 뒤에서", "갈림길에서", "열람실에서", "나룻배 갑판에서", "돌담 옆에서", "온실 안에서",
    "가마 근처에서", "과수원에서", "시장 차양 아래에서", "방앗간 연못가에서",
)
KO_WHAT = (
    "나무 대문을", "낡은 등불을", "배 한 바구니를", "찢어진 지도를", "구리 주전자를",
    "장화 한 켤레를", "파란 우산을", "고장 난 시계를", "꿀 한 단지를", "고기잡이 그물을",
    "정원 의자를", "편지 한 묶음을", "은숟가락을", "쇠 열쇠를", "털목도리를", "종이 연을",
    "돌 그릇을", "밀가루 한 자루를", "색칠한 문을", "작은 북을", "갈대 한 다발을",
    "가족 초상화를", "가죽 안장을", "사과 한 상자를", "좁은 사다리를", "유리병을",
    "벨벳 커튼을", "녹슨 닻을", "삼나무 궤짝을", "자두 한 그릇을", "깃털 베개를",
    "놋쇠 나침반을", "아마포 한 필을", "참나무 탁자를", "흙 피리를", "삐걱거리는 의자를",
    "양철 병정을", "밤 한 자루를", "빛바랜 깃발을", "실타래를",
)
KO_DID = (
    "고쳤다", "칠했다", "옮겼다", "찾아냈다", "닦았다", "재어 보았다", "자세히 설명했다",
    "포장했다", "스케치했다", "윤이 나게 닦았다", "숨겼다", "돌려주었다", "빌렸다", "정리했다",
    "살펴보았다", "들어 올렸다", "한참 바라보았다", "편지에 적었다", "조용히 노래로 불렀다",
    "잊어버렸다", "두고 다투었다", "감탄하며 보았다", "리본으로 묶었다", "떨어뜨렸다",
    "연구했다", "챙겨 넣었다", "먼지를 털었다", "다른 물건과 바꾸었다", "다시 만들었다",
    "사진으로 찍었다",
)

LISTS = {"en": (EN_WHO, EN_DID, EN_WHAT, EN_WHERE, EN_WHEN),
         "ko": (KO_WHEN, KO_WHO, KO_WHERE, KO_WHAT, KO_DID)}


def combinations(language: str) -> int:
    """How many distinct sentences the word lists of `language` make."""
    return math.prod(len(words) for words in LISTS[language])


def _sentence(language: str, index: int) -> str:
    parts = []
    for words in LISTS[language]:
        index, pick = divmod(index, len(words))
        parts.append(words[pick])
    if language == "en":
        who, did, what, where, when = parts
        return f"{who} {did} {what} {where} {when}."
    return " ".join(parts) + "."


def sentences(language: str, seed: int) -> Iterator[str]:
    """The filler of `language` for `seed`: sentences that never repeat (N of them, then stop)."""
    if language not in LISTS:
        raise ValueError(f"no filler for language '{language}' (have {', '.join(LISTS)})")
    n = combinations(language)
    rng = random.Random(f"niah-filler-{language}-{seed}")
    step = rng.randrange(1, n)
    while math.gcd(step, n) != 1:
        step = rng.randrange(1, n)
    offset = rng.randrange(n)
    for k in range(n):
        yield _sentence(language, (step * k + offset) % n)
