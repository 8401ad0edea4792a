"""Realistic, varied HL7 v2 traffic for the load generator.

A benchmark fed one message repeated measures a cache, not an engine: the same control
id is a duplicate (answered from the journal without new work), the same patient is one
upsert, the same order one record. So every message here has its own control id
(MSH-10) and its own order or visit number, patients come from a pool of distinct
people with valid 身份证号 (check digit, birth date and sex agree, so the record store
links by them as it would in a hospital), and the mix is what a 妇幼保健院 sends: LIS
ORU^R01 results with ~15 OBX (~1.6 KB) and HIS ADT^A04/A08/A01, partly in GB18030
with MSH-18 `GB 18030-2000`.

Building a 1.6 KB message costs tens of microseconds of Python, which would be charged
to the load generator on every send and eat into the two cores the server under test
needs. So messages are rendered once into byte templates with two slots (control id,
order/visit serial) and stamped at send time by one `bytes.join`; both slot values are
ASCII, hence the same bytes in UTF-8 and GB18030.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

CTRL = "\x00CTRL\x00"
SERIAL = "\x00SERIAL\x00"

CHARSETS = {"utf-8": "UNICODE UTF-8", "gb18030": "GB 18030-2000"}
"""Python codec → what MSH-18 says for it."""

_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡"
    "余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯"
    "龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
_GIVEN = (
    "晓雯思雨欣怡婷婷雅琴丽娟秀英桂芳玉兰静怡梦瑶诗涵佳琪紫萱雨桐若曦子涵欣妍可馨语嫣"
    "梓萱一诺依琳淑华春梅海燕红霞慧敏晶晶美玲小燕丹丹"
)
_AREAS = ("500112", "500230", "500103", "500105", "500106", "500107", "500108", "510104", "110105", "440305")
_DISTRICTS = (
    ("渝北区", "龙溪街道新牌坊路", "401147"),
    ("丰都县", "三合街道名山大道", "408200"),
    ("渝中区", "解放碑街道民族路", "400010"),
    ("江北区", "观音桥街道建新北路", "400020"),
    ("沙坪坝区", "小龙坎街道天星桥", "400030"),
)
_DEPARTMENTS = ("产科门诊", "妇科门诊", "产科病房", "儿童保健科", "婚前保健科")
_DOCTORS = ("D1001^王医生", "D1023^张敏", "D1045^李红", "D2011^刘芳", "D2088^陈静")

# (local code, name, unit as sent in OBX-6, low, high, decimals) — codes of mappings/codes/lis_tests.csv.
_ANALYTES = (
    ("WBC", "白细胞计数", "10\\S\\9/L", 3.5, 9.5, 2),
    ("NEUT%", "中性粒细胞百分比", "%", 40, 75, 1),
    ("LYMPH%", "淋巴细胞百分比", "%", 20, 50, 1),
    ("RBC", "红细胞计数", "10\\S\\12/L", 3.8, 5.1, 2),
    ("HGB", "血红蛋白", "g/L", 115, 150, 0),
    ("HCT", "红细胞压积", "%", 35, 45, 1),
    ("MCV", "平均红细胞体积", "fL", 82, 100, 1),
    ("MCH", "平均红细胞血红蛋白含量", "pg", 27, 34, 1),
    ("MCHC", "平均红细胞血红蛋白浓度", "g/L", 316, 354, 0),
    ("PLT", "血小板计数", "10\\S\\9/L", 125, 350, 0),
    ("FER", "血清铁蛋白", "μg/L", 15, 150, 1),
    ("GLU0", "空腹血糖", "mmol/L", 3.9, 5.1, 2),
    ("TSH", "促甲状腺激素", "mIU/L", 0.27, 4.2, 2),
    ("FT4", "游离甲状腺素", "pmol/L", 12, 22, 1),
    ("ALT", "丙氨酸氨基转移酶", "U/L", 7, 40, 0),
    ("AST", "天门冬氨酸氨基转移酶", "U/L", 13, 35, 0),
    ("TBIL", "总胆红素", "μmol/L", 3.4, 20.5, 1),
    ("TBA", "总胆汁酸", "μmol/L", 0, 10, 1),
)
_PANELS = (("BLD01", "血常规", "BLD", "全血"), ("BIO01", "孕期生化", "SER", "血清"))


@dataclass(frozen=True, slots=True)
class Patient:
    his_id: str
    id_card: str
    name: str
    pinyin: str
    birth: str  # YYYYMMDD
    sex: str  # F or M
    district: tuple[str, str, str]
    phone: str


@dataclass(frozen=True, slots=True)
class Template:
    """A rendered message with its slots: chunks interleave with slot values."""

    chunks: tuple[bytes, ...]
    slots: tuple[str, ...]  # "ctrl" or "serial", one per gap between chunks
    charset: str  # Python codec: utf-8 or gb18030
    kind: str  # MSH-9, for reports
    sender: str  # MSH-3


@dataclass(frozen=True, slots=True)
class Outgoing:
    seq: int
    control_id: str
    payload: bytes
    charset: str
    kind: str


def id_card_for(area: str, birth: str, serial: int, sex: str) -> str:
    """An 18-character 身份证号 that passes GB 11643: odd 17th digit for men, ISO 7064 check."""
    seq = serial % 500 * 2 + (1 if sex == "M" else 0)
    body = f"{area}{birth}{seq:03d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    check = "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]
    return body + check


def make_patients(count: int, rng: random.Random) -> list[Patient]:
    """Distinct people: HIS ids and ID card numbers never repeat within the pool."""
    out = []
    for i in range(count):
        sex = "F" if rng.random() < 0.9 else "M"  # mostly mothers; some partners
        born = datetime(1982, 1, 1) + timedelta(days=rng.randrange(0, 365 * 20))
        birth = born.strftime("%Y%m%d")
        name = rng.choice(_SURNAMES) + "".join(rng.choice(_GIVEN) for _ in range(rng.choice((1, 2))))
        out.append(
            Patient(
                his_id=f"00{10000000 + i:08d}",
                id_card=id_card_for(_AREAS[i % len(_AREAS)], birth, i // len(_AREAS), sex),
                name=name,
                pinyin=f"P{i:06d}^NAME",
                birth=birth,
                sex=sex,
                district=_DISTRICTS[i % len(_DISTRICTS)],
                phone=f"139{rng.randrange(10**8):08d}",
            )
        )
    return out


def _pid(p: Patient) -> str:
    street = f"{p.district[1]}{(int(p.his_id) % 300) + 1}号"
    return (
        f"PID|1||{p.his_id}^^^HIS^PI~{p.id_card}^^^^ID||{p.name}^^^^^^L~{p.pinyin}^^^^^P||{p.birth}|{p.sex}"
        f"|||{street}^^重庆市^重庆市^{p.district[2]}^CHN^H^^500112||^PRN^CP^^^^^^^^^{p.phone}"
        "|||||||||||||||01^汉族^GB3304"
    )


def _oru(p: Patient, rng: random.Random, when: datetime, charset: str) -> str:
    panel_code, panel_name, specimen, specimen_name = rng.choice(_PANELS)
    ts = when.strftime("%Y%m%d%H%M%S")
    collected = (when - timedelta(hours=2)).strftime("%Y%m%d%H%M%S")
    doctor, verifier = rng.choice(_DOCTORS), rng.choice(_DOCTORS).replace("^", "&")
    segments = [
        f"MSH|^~\\&|LIS|10|MCHENGINE|FY01|{ts}||ORU^R01|{CTRL}|P|2.4|||AL|NE|CHN|{CHARSETS[charset]}",
        _pid(p),
        f"PV1|1|O|{rng.choice(_DEPARTMENTS)}^^^FY01||||{doctor}||||||||||||MZ{SERIAL}",
        f"ORC|RE|JC{SERIAL}|{SERIAL}||CM||||{ts}|||{doctor}",
        f"OBR|1|JC{SERIAL}|{SERIAL}|{panel_code}^{panel_name}^L|||{collected}|||||||{collected}"
        f"|{specimen}^{specimen_name}|{doctor}||||||{ts}||HEM|F|||||||{verifier}",
    ]
    analytes = rng.sample(_ANALYTES, 15)
    for n, (code, name, unit, low, high, decimals) in enumerate(analytes, 1):
        value = rng.uniform(low * 0.8, high * 1.15)
        flag = "L" if value < low else "H" if value > high else "N"
        shown = f"{value:.{decimals}f}"
        segments.append(f"OBX|{n}|NM|{code}^{name}^L||{shown}|{unit}|{low}-{high}|{flag}|||F|||{ts}")
    return "\r".join(segments) + "\r"


def _adt(p: Patient, rng: random.Random, when: datetime, charset: str) -> tuple[str, str]:
    event = rng.choices(("A04", "A08", "A01"), weights=(6, 3, 1))[0]
    structure = "ADT_A01"
    ts = when.strftime("%Y%m%d%H%M%S")
    klass, dept = ("I", "产科病房") if event == "A01" else ("O", rng.choice(_DEPARTMENTS))
    segments = [
        f"MSH|^~\\&|HIS|FY01|MCHENGINE|FY01|{ts}||ADT^{event}^{structure}|{CTRL}|P|2.5|||AL|NE|CHN"
        f"|{CHARSETS[charset]}",
        f"EVN|{event}|{ts}",
        _pid(p),
        f"PV1|1|{klass}|{dept}^^^FY01||||{rng.choice(_DOCTORS)}||||||||||||ZY{SERIAL}",
    ]
    return "\r".join(segments) + "\r", f"ADT^{event}"


def _compile(text: str, charset: str, kind: str, sender: str) -> Template:
    chunks: list[bytes] = []
    slots: list[str] = []
    rest = text
    while True:
        i, j = rest.find(CTRL), rest.find(SERIAL)
        if i < 0 and j < 0:
            chunks.append(rest.encode(charset))
            break
        if j < 0 or (0 <= i < j):
            chunks.append(rest[:i].encode(charset))
            slots.append("ctrl")
            rest = rest[i + len(CTRL) :]
        else:
            chunks.append(rest[:j].encode(charset))
            slots.append("serial")
            rest = rest[j + len(SERIAL) :]
    return Template(tuple(chunks), tuple(slots), charset, kind, sender)


class MessageFactory:
    """Message number `seq` of a run, reproducible from (run_id, seed).

    `oru_share` of the messages are LIS results, the rest HIS ADT; `gb18030_share` are
    encoded in GB18030 (declared in MSH-18), the rest in UTF-8.
    """

    def __init__(
        self,
        run_id: str,
        *,
        seed: int = 20250310,
        patients: int = 5000,
        templates: int = 3000,
        oru_share: float = 0.6,
        gb18030_share: float = 0.3,
    ) -> None:
        if not run_id.isascii() or not run_id.isalnum():
            raise ValueError("run_id must be ASCII letters and digits (it goes into MSH-10)")
        self.run_id = run_id
        rng = random.Random(seed)
        self.patients = make_patients(patients, rng)
        start = datetime(2025, 3, 10, 8, 0, 0)
        self.templates: list[Template] = []
        for t in range(templates):
            patient = self.patients[(t * 7919) % len(self.patients)]
            charset = "gb18030" if rng.random() < gb18030_share else "utf-8"
            when = start + timedelta(seconds=37 * t)
            if rng.random() < oru_share:
                text, kind, sender = _oru(patient, rng, when, charset), "ORU^R01", "LIS"
            else:
                (text, kind), sender = _adt(patient, rng, when, charset), "HIS"
            self.templates.append(_compile(text, charset, kind, sender))

    def fork(self, run_id: str) -> MessageFactory:
        """The same templates under another run id: fresh control ids without rebuilding."""
        if not run_id.isascii() or not run_id.isalnum():
            raise ValueError("run_id must be ASCII letters and digits (it goes into MSH-10)")
        twin = copy.copy(self)
        twin.run_id = run_id
        return twin

    def control_id(self, seq: int) -> str:
        return f"{self.run_id}{seq:09d}"

    def message(self, seq: int) -> Outgoing:
        template = self.templates[seq % len(self.templates)]
        control = self.control_id(seq)
        ctrl_b = control.encode("ascii")
        serial_b = f"{self.run_id[-4:]}{seq:09d}".encode("ascii")
        parts: list[bytes] = [template.chunks[0]]
        for slot, chunk in zip(template.slots, template.chunks[1:], strict=True):
            parts.append(ctrl_b if slot == "ctrl" else serial_b)
            parts.append(chunk)
        return Outgoing(seq, control, b"".join(parts), template.charset, template.kind)

    def describe(self) -> str:
        """One line for the report: what the traffic is made of."""
        n = len(self.templates)
        oru = [t for t in self.templates if t.kind == "ORU^R01"]
        gb = sum(1 for t in self.templates if t.charset == "gb18030")
        sizes = sorted(sum(map(len, t.chunks)) + 40 for t in oru) or [0]
        adt_sizes = sorted(sum(map(len, t.chunks)) + 40 for t in self.templates if t.kind != "ORU^R01") or [0]
        return (
            f"{len(self.patients):,} distinct patients; ORU^R01 {len(oru) / n:.0%} "
            f"(15 OBX, median {sizes[len(sizes) // 2]:,} B), ADT^A04/A08/A01 {1 - len(oru) / n:.0%} "
            f"(median {adt_sizes[len(adt_sizes) // 2]:,} B); GB18030 {gb / n:.0%}, UTF-8 {1 - gb / n:.0%}; "
            "every control id and order/visit number unique"
        )
