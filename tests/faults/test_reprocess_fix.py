"""A dead letter fixed by a mapping change and reprocessed, as the on-call does it.

A mapping in the test's directory requires a field the message lacks, so the message is a
transform-stage dead letter. Reprocessing before the fix fails again and keeps it open; after
the mapping file is fixed and the engine restarted (the running engine carries out the reprocess
with the mappings it has loaded), `mch-engine deadletter reprocess ID --wait` delivers it once, the
dead letter is `reprocessed`, the audit log has the action, and reprocessing again changes nothing.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

from engine_process import EngineProcess, mch, mch_json, send_stream, wait_for
from fault_setup import RABBITMQ_PG, adt, engine_setup, rows
from support import REPO, REPORT, scalar

pytestmark = [pytest.mark.services, pytest.mark.slow]

SHIPPED = REPO / "mappings/his/adt_person.yaml"
OPTIONAL = "        mch_handbook_no: PID-3[*].1 where PID-3[*].5 == MCH\n"
REQUIRED = '        mch_handbook_no: {path: "PID-3[*].1 where PID-3[*].5 == MCH", required: true}\n'


def test_mapping_dead_letter_reprocessed_after_the_fix_is_delivered_once(tmp_path: Path) -> None:
    """Required 母子健康手册号 missing → transform dead letter; fix; reprocess → 1 Person; again → nothing."""
    shipped = SHIPPED.read_text(encoding="utf-8")
    assert OPTIONAL in shipped
    mapping = tmp_path / "his" / "adt_person.yaml"
    mapping.parent.mkdir()
    mapping.write_text(shipped.replace(OPTIONAL, REQUIRED), encoding="utf-8")
    shutil.copytree(REPO / "mappings" / "common", tmp_path / "common")  # its includes
    tag = uuid.uuid4().hex[:6].upper()
    bad_cid, good_cid, marker_cid = f"R{tag}-1", f"R{tag}-2", f"R{tag}-3"
    bad = adt(bad_cid, f"R{tag}01")  # no MCH handbook number
    good = adt(good_cid, f"R{tag}02", extra_ids=f"~MCH{tag}02^^^^MCH")
    marker = adt(marker_cid, f"R{tag}03", extra_ids=f"~MCH{tag}03^^^^MCH")
    edit = {str(SHIPPED): str(mapping)}

    with engine_setup(RABBITMQ_PG, tmp_path, routes_edit=edit) as setup:
        config = setup.routes
        with EngineProcess(config) as engine:
            acks = send_stream(engine.port(), [bad, good], [bad_cid, good_cid], connections=1)
            assert acks.codes == ["AA", "AA"]  # a mapping failure is the engine's problem, not the sender's
            wait_for(
                lambda: scalar(setup.store, "select count(*) from persons") == 1, 20, "the good one", engine
            )
            wait_for(
                lambda: scalar(setup.journal, "select count(*) from dead_letters") == 1, 20, "dead letter"
            )

            listed = mch_json(config, "deadletter", "list")
            assert len(listed) == 1
            dl = listed[0]
            assert (dl["stage"], dl["channel"], dl["route"], dl["attempts"]) == (
                "transform",
                "hospital",
                "persons",
                1,
            )
            assert f"{mapping}:" in dl["reason"] and "required" in dl["reason"], dl["reason"]
            assert "PID-3" in dl["reason"]
            dl_id = str(dl["id"])
            jid = dl["journal_id"]
            assert (
                scalar(setup.journal, "select status from journal_messages where id = :j", j=jid) == "failed"
            )

            # Before the fix is deployed: fails again, stays open, one more attempt, the newest reason.
            early = mch(config, "deadletter", "reprocess", dl_id, "--as", "fault-oncall")
            assert early.returncode == 1, early.stdout + early.stderr
            assert "still fails" in early.stdout
            again = mch_json(config, "deadletter", "list")
            assert [(d["id"], d["status"], d["attempts"]) for d in again] == [(dl["id"], "open", 2)]

            # The fix: the mapping no longer requires the field.
            mapping.write_text(shipped, encoding="utf-8")
            assert mch(config, "check").returncode == 0
            assert engine.stop() == 0
            engine.start()  # loads the fixed mapping

            done = mch(config, "deadletter", "reprocess", dl_id, "--as", "fault-oncall", "--wait", "20")
            assert done.returncode == 0, done.stdout + done.stderr
            assert "delivered to record_store" in done.stdout
            assert "1 delivered" in done.stdout
            wait_for(
                lambda: scalar(setup.store, "select count(*) from persons") == 2, 20, "reprocessed", engine
            )
            wait_for(
                lambda: (
                    scalar(
                        setup.journal, "select status from journal_deliveries where journal_id = :j", j=jid
                    )
                    == "delivered"
                ),
                20,
                "its delivery in the journal",
                engine,
            )
            first = rows(
                setup.store,
                "select person_key, journal_id, stored_at from persons where source_control_id = :c",
                c=bad_cid,
            )
            assert len(first) == 1 and first[0].journal_id == jid
            assert (
                scalar(setup.journal, "select status from journal_messages where id = :j", j=jid) == "routed"
            )

            closed = mch_json(config, "deadletter", "list", "--status", "all")
            assert [(d["id"], d["status"], d["resolved_by"]) for d in closed] == [
                (dl["id"], "reprocessed", "fault-oncall")
            ]
            assert mch_json(config, "deadletter", "list") == []
            log = mch_json(config, "deadletter", "audit")
            reprocesses = [a for a in log if a["action"] == "reprocess"]
            assert [(a["actor"], a["target"], a["count"]) for a in reprocesses] == [
                ("fault-oncall", dl_id, 1),
                ("fault-oncall", dl_id, 0),
            ]
            assert reprocesses[0]["detail"]["done"] == [dl["id"]]
            shown = mch_json(config, "deadletter", "show", dl_id)[0]
            assert [t["outcome"] for t in shown["attempt_log"]][-2:] == ["reprocess_failed", "reprocessed"]

            # Reprocessing again changes nothing: skipped, audited, nothing published.
            repeat = mch(config, "deadletter", "reprocess", dl_id, "--as", "fault-oncall")
            assert repeat.returncode == 0, repeat.stdout + repeat.stderr
            assert "already reprocessed: nothing to do" in repeat.stdout
            assert "0 done, 1 skipped, 0 failed" in repeat.stdout
            # A marker sent after it reaches the store through the same queue: had the second
            # reprocess published anything, it would have been stored before the marker.
            assert send_stream(engine.port(), [marker], [marker_cid], connections=1).codes == ["AA"]
            wait_for(
                lambda: scalar(setup.store, "select count(*) from persons") == 3, 20, "the marker", engine
            )
            after = rows(
                setup.store,
                "select person_key, journal_id, stored_at from persons where source_control_id = :c",
                c=bad_cid,
            )
            assert after == first
            assert (
                scalar(setup.journal, "select count(*) from journal_deliveries where journal_id = :j", j=jid)
                == 1
            )
            assert scalar(setup.journal, "select count(*) from dead_letters") == 1
            log = mch_json(config, "deadletter", "audit")
            newest = [(a["action"], a["count"]) for a in log if a["action"] == "reprocess"]
            assert newest == [("reprocess", 0), ("reprocess", 1), ("reprocess", 0)]
            assert engine.stop() == 0

    REPORT.append(
        f"faults reprocess after a mapping fix: transform dead letter #{dl_id} (reason names "
        f"{mapping.name} and PID-3); reprocess before the fix → still open, attempts 2; after the fix → "
        "1 Person, dead letter reprocessed by fault-oncall, audit count 1; again → skipped, audit count 0, "
        "store unchanged"
    )
