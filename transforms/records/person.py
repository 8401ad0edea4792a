"""Person (个人基本信息): a mother, a woman or a child with all her identifiers.

The identity fields every record shares (name, sex, birth date, ID card, HIS id, handbook
and birth certificate numbers) live in `person` (a `PersonRef`), so linking works the same
for a Person and for a lab result. Person adds what only registration messages carry.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from transforms.records.base import Between, Coded, PastDatetime, PersonRef, Record, ValueModel, problem

__all__ = ["Address", "Identifier", "Person"]


class Identifier(ValueModel):
    """标识符 one identifier of a person (an HL7 PID-3 repetition, CX)."""

    value: str = Field(min_length=1, description="标识号 the identifier (CX.1)")
    type: str | None = Field(
        None,
        description="标识类型 identifier type code (CX.5): ID 身份证, PI HIS患者ID, "
        "MCH 母子健康手册, BC 出生医学证明, WX 微信openid, or a local code",
    )
    authority: str | None = Field(None, description="发证机构 assigning authority (CX.4), e.g. HIS")


class Address(ValueModel):
    """地址 a postal address (HL7 XAD), with the 6-digit county code (行政区划代码)."""

    text: str | None = Field(None, description="地址全文 the address as one line")
    street: str | None = Field(None, description="街道门牌 street and house number (XAD.1)")
    township: str | None = Field(None, description="乡镇/街道 township or sub-district (XAD.2)")
    city: str | None = Field(None, description="市 city (XAD.3)")
    province: str | None = Field(None, description="省 province (XAD.4)")
    postal_code: str | None = Field(None, description="邮编 postal code (XAD.5)")
    county_code: str | None = Field(
        None, description="县区代码 6-digit administrative division code, e.g. 500112 (XAD.9)"
    )

    @field_validator("county_code")
    @classmethod
    def _six_digits(cls, value: str | None) -> str | None:
        if value is not None and not (len(value) == 6 and value.isascii() and value.isdigit()):
            raise problem("county_code", f"{value!r} is not a 6-digit administrative division code")
        return value


class Person(Record):
    """个人基本信息 a person (mother, woman, child) from a registration or update (ADT)."""

    record_type: Literal["Person"] = Field("Person", description="记录类型 record type")
    person: PersonRef = Field(  # type: ignore[assignment]
        description="身份 name, sex, birth date and the identifiers used for linking"
    )
    identifiers: list[Identifier] = Field(
        default_factory=list, description="标识符 every identifier the message carries (PID-3)"
    )
    merged_identifiers: list[Identifier] = Field(
        default_factory=list,
        description="被合并标识 identifiers retired by a merge (ADT^A40 MRG-1); records filed "
        "under them belong to this person",
    )
    name_pinyin: str | None = Field(None, description="姓名拼音 name in pinyin")
    birth_time: PastDatetime | None = Field(
        None, description="出生时间 time of birth (newborns; PID-7 with time)"
    )
    ethnicity: Coded | None = Field(
        None, description="民族 (DE02.01.025.00) GB/T 3304 two-digit code, e.g. 01 汉族"
    )
    nationality: Coded | None = Field(None, description="国籍 nationality, e.g. CHN 中国")
    id_document_type: Coded | None = Field(
        None,
        description="身份证件类别 (DE02.01.031.00) CV02.01.101: 01 居民身份证, 02 户口簿, 03 护照, … 99 其他",
    )
    marital_status: Coded | None = Field(None, description="婚姻状况 marital status, e.g. M 已婚")
    phone: str | None = Field(None, description="电话 (DE02.01.010.00) phone number")
    email: str | None = Field(None, description="电子邮箱 e-mail address")
    address: Address | None = Field(None, description="现住址 current address")
    multiple_birth_order: Annotated[int, Between("multiple birth order", 1, 9)] | None = Field(
        None, description="多胎次序 birth order of a twin or triplet (PID-25)"
    )
