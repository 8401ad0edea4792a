"""PMTCT follow-up case (预防母婴传播随访个案): derived by the engine, never sent by a hospital.

A positive HIV, syphilis or HBsAg result of a registered pregnant woman (or of a mother soon
after delivery) opens one case per infection and pregnancy, with the follow-up items of
《预防艾滋病、梅毒和乙肝母婴传播工作规范（2020年版）》 for her and her infant, their due dates,
what is done and what is overdue. The rules that fill it are `transforms/rules/pmtct.py`; the
schedule is `mappings/rules/pmtct.yaml`.
"""

from __future__ import annotations

from datetime import date
from typing import Any, ClassVar, Literal

from pydantic import Field, computed_field, field_validator, model_validator

from core.audience import PMTCT_OFFICER
from transforms.records.base import Record, RecordModel, drop_computed, problem
from transforms.records.pregnancy import ObservationRef

__all__ = ["AUDIENCE", "Infection", "PmtctCase", "PmtctItem"]

Infection = Literal["hiv", "syphilis", "hbv"]
AUDIENCE = PMTCT_OFFICER


class PmtctItem(RecordModel):
    """随访项目 one follow-up item of a case: who, when it is due, whether it is done."""

    id: str = Field(min_length=1, description="项目代码 item id from the schedule, e.g. hbv_hbig")
    name: str = Field(
        min_length=1, description="项目名称 the item in Chinese, e.g. 乙肝免疫球蛋白（出生12小时内）"
    )
    who: Literal["mother", "infant"] = Field(description="对象 mother 孕产妇 or infant 儿童")
    infant_key: str | None = Field(
        None, description="儿童档案 the infant's person key in the store, when known"
    )
    infant_birth_certificate_no: str | None = Field(
        None, description="出生医学证明编号 the infant's birth certificate number, when known"
    )
    due_from: date | None = Field(
        None, description="应完成起始日 first day of the window (empty until the birth is known)"
    )
    due_by: date | None = Field(None, description="应完成截止日 last day of the window")
    done_on: date | None = Field(None, description="完成日期 the day the record that did it speaks of")
    done_record_id: str | None = Field(None, description="完成记录 the record that marked it done")
    status: Literal["pending", "done"] = Field("pending", description="状态 pending 待完成 or done 已完成")

    def overdue_on(self, day: date) -> bool:
        """Past its last day and not done on `day`."""
        return self.status != "done" and self.due_by is not None and day > self.due_by


class PmtctCase(Record):
    """预防母婴传播随访个案 a PMTCT follow-up case for one infection in one pregnancy.

    `audience` is always `pmtct_officer` (预防母婴传播专管人员): the case names an infection
    (HIV, syphilis, hepatitis B), which is sensitive personal information the woman has not
    chosen to share with anyone else; it is for the designated officer only, never for the
    patient herself and never a WeChat message to her (MCH-DOMAIN §6 and §9). The field is
    carried on the record so that a destination added later can check it; any other value is
    refused.
    """

    FIXED_AUDIENCE: ClassVar[str | None] = AUDIENCE

    record_type: Literal["PmtctCase"] = Field("PmtctCase", description="记录类型 record type")
    infection: Infection = Field(description="感染类型 hiv 艾滋病, syphilis 梅毒, hbv 乙肝")
    status: Literal["provisional", "open", "closed"] = Field(
        description="个案状态 provisional 待复核 (preliminary result), open 随访中, closed 已结案"
    )
    close_reason: Literal["corrected_negative"] | None = Field(
        None, description="结案原因 corrected_negative 更正结果为阴性 (the record is in closed_by)"
    )
    closed_by: ObservationRef | None = Field(
        None, description="结案依据 the corrected observation that now reads negative"
    )
    opened_on: date = Field(description="建案日期 the day of the result that opened the case")
    closed_on: date | None = Field(None, description="结案日期 the day of the corrected result")
    opened_by: ObservationRef = Field(description="建案依据 the positive or reactive observation")
    episode_start: date = Field(
        description="孕期起始 start of the pregnancy episode (LMP, or registration date minus "
        "gestational age)"
    )
    delivery_date: date | None = Field(None, description="分娩日期 delivery date, once known")
    items: list[PmtctItem] = Field(default_factory=list, description="随访项目 follow-up items")
    as_of: date = Field(description="评估日期 the day the case was evaluated")
    schedule_version: str = Field(description="随访规则版本 version of the schedule that produced it")
    audience: Literal["pmtct_officer"] = Field(
        AUDIENCE,
        description="接收对象 always pmtct_officer 预防母婴传播专管人员: never the patient, "
        "never WeChat to her",
    )

    _drop_computed = drop_computed

    @field_validator("audience", mode="before")
    @classmethod
    def _officer_only(cls, value: Any) -> Any:
        if value != AUDIENCE:
            raise problem(
                "pmtct_audience",
                f"audience {value!r} is refused: a PMTCT case is for the PMTCT officer "
                f"({AUDIENCE}) only, never the patient or WeChat",
            )
        return value

    @model_validator(mode="after")
    def _closure(self) -> PmtctCase:
        closed = self.status == "closed"
        if closed and (self.close_reason is None or self.closed_on is None):
            raise problem("close_reason", "close_reason and closed_on are required when status is closed")
        if not closed and (self.close_reason or self.closed_on or self.closed_by):
            raise problem("close_reason", "close_reason, closed_on and closed_by must be empty unless closed")
        ids = [i.id for i in self.items]
        if len(ids) != len(set(ids)):
            raise problem("pmtct_items", f"item ids repeat: {sorted({i for i in ids if ids.count(i) > 1})}")
        return self

    def overdue_on(self, day: date) -> list[PmtctItem]:
        """The items past their last day and not done on `day` (none once the case is closed)."""
        if self.status == "closed":
            return []
        return [item for item in self.items if item.overdue_on(day)]

    @computed_field(  # type: ignore[prop-decorator]
        description="逾期项目 (derived) ids of the items past due_by and not done as of as_of"
    )
    @property
    def overdue(self) -> list[str]:
        return [item.id for item in self.overdue_on(self.as_of)]
