"""What the derived-relay tests share: the messages of one woman, the bodies an HTTP receiver got
at each destination's path, and a routes.yaml relaying her derived records."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from http_receiver import Seen, http_server

from support import REPO, free_port, hl7

MAPPINGS = REPO / "mappings"
REGISTRATION = (
    MAPPINGS / "his/samples/002_ORU-R01_utf-8__pregnancy-registration-lmp-edd-gravidity.hl7"
).read_bytes()
BLOOD_ROUTINE = (MAPPINGS / "lis/samples/003_ORU-R01_utf-8__lis-blood-routine.hl7").read_bytes()
# The same woman's blood routine with Hb 96 g/L: anaemia (yellow) above her clinician's green.
LOW_HB = BLOOD_ROUTINE.replace(
    b"HGB^\xe8\xa1\x80\xe7\xba\xa2\xe8\x9b\x8b\xe7\x99\xbd^L||118|g/L|115-150|N|",
    b"HGB^\xe8\xa1\x80\xe7\xba\xa2\xe8\x9b\x8b\xe7\x99\xbd^L||96|g/L|115-150|L|",
)
PID = (
    "PID|1||0010023456^^^HIS^PI~500112199403151525^^^^ID||陈思雨||19940315|F||||||||||||||"
    "01^汉族^GB3304||||||CHN^中国"
)
HBSAG = hl7(
    "MSH|^~\\&|LIS|10|MCHENGINE|FY01|20240326150000||ORU^R01|RELAY-HBV-F|P|2.4|||AL|NE|CHN|UNICODE UTF-8",
    PID,
    "OBR|1|JC-HBV|2403250101|IMM05^乙肝两对半^L|||20240325090000||||||||SER^血清|||||||20240326150000||IMM|F",
    "OBX|1|ST|HBSAGQ^乙肝表面抗原（定性）^L||阳性(+)||阴性|A|||F|||20240326150000",
)


def posted(seen: Seen, path: str) -> list[dict[str, Any]]:
    """The bodies POSTed to one destination's endpoint (`path`), in order."""
    return [body for where, _headers, body in list(seen.requests) if where == path]


@contextmanager
def receiver() -> Iterator[tuple[str, Seen]]:
    """A receiver answering 200 to every POST; its base URL (each destination adds a path)."""
    with http_server(lambda n: (200, {}, b"{}")) as (url, seen):
        yield url.rsplit("/", 2)[0], seen


def relay_routes(directory: Path, base_url: str, *, port: int | None = None, patient: bool = True) -> Path:
    """The shipped registration and lab routes, the rule tables, and the relay of what they derive.
    `patient`: the PMTCT route also names a `reaches: patient` destination (which `check`
    refuses, and `mch-engine run` with it; a test's engine in a thread starts without `check`)."""
    text = f"""\
version: 1
engine:
  database: 'sqlite:///{directory}/engine.db'
  broker: 'memory://'
  allowed_paths: ['{MAPPINGS}']
channels:
  hospital: {{type: mllp, listen: '127.0.0.1:{port or free_port()}', encoding: utf-8}}
  rules: {{type: derived, store: record_store, every: 0.2s}}
routes:
  - name: pregnancy
    from: hospital
    message_type: ORU^R01
    when: MSH-3 == HIS and OBR-4.1 in [MCH-REG, MCH-ANC]
    mapping: {MAPPINGS / "his/pregnancy.yaml"}
    to: record_store
  - name: lab-results
    from: hospital
    message_type: ORU^R01
    when: MSH-3 == LIS
    mapping: {MAPPINGS / "lis/oru_r01.yaml"}
    to: record_store
  - name: clinical-alerts
    from: rules
    message_type: RiskAssessment
    to: staff_alerts
  - name: pmtct-cases
    from: rules
    message_type: PmtctCase
    to: [pmtct_officer{", patient_app" if patient else ""}]
destinations:
  record_store:
    type: record_store
    rules: ['{MAPPINGS / "rules/risk_five_colour.yaml"}', '{MAPPINGS / "rules/pmtct.yaml"}']
    publish_derived: true
  staff_alerts: {{type: http_out, url: '{base_url}/staff', reaches: staff}}
  pmtct_officer: {{type: http_out, url: '{base_url}/pmtct', reaches: pmtct_officer}}
  patient_app: {{type: http_out, url: '{base_url}/patient', reaches: patient}}
"""
    path = directory / "routes.yaml"
    path.write_text(text, encoding="utf-8")
    return path
