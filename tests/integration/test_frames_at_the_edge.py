"""What a frame may hold, and what a hostile peer can make the engine do, over real MLLP.

Two messages glued in one frame are refused whole (never merged into one patient's record);
a batch with segments outside its messages is refused whole with a batch answer; a burst of
garbage is one journal row and one log line; a peer that never reads its ACKs stops being read.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from channels.mllp.framing import Frame, MllpDecoder, frame
from channels.mllp.source import WRITE_HIGH
from support import ENGINE_LOG, RunningEngine, hl7, msa, scalar, wait_until, write_routes


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    tmp = tmp_path_factory.mktemp("frames")
    with RunningEngine(write_routes(tmp, database=f"sqlite:///{tmp}/engine.db")) as running:
        yield running


def oru(control_id: str, patient: str, name: str, *obx: str) -> list[str]:
    return [
        f"MSH|^~\\&|LIS|10|MCHENGINE|FY01|20240321113502||ORU^R01|{control_id}|P|2.4",
        f"PID|1||{patient}^^^HIS^PI||{name}||19940315|F",
        f"OBR|1|{control_id}|{control_id}|BLD01^血常规^L|||20240321083000||||||||BLD^全血|||||||"
        "20240321113000||HEM|F",
        *obx,
    ]


A = oru("GLUE-A", "0010077001", "陈思雨", "OBX|1|NM|HGB^血红蛋白^L||118|g/L|115-150|N|||F")
B = oru("GLUE-B", "0010077002", "王小红", "OBX|1|ST|HBSAG^乙肝表面抗原^L||阳性||阴性|A|||F")


def rows(engine: RunningEngine, where: str, **params: object) -> int:
    return int(scalar(engine.journal, f"select count(*) from journal_messages where {where}", **params))


def observations(engine: RunningEngine, control_id: str) -> list[str]:
    store = engine.store()
    payload = wait_until(
        lambda: scalar(store, "select payload from records where source_control_id = :c", c=control_id)
    )
    payload = payload if isinstance(payload, dict) else json.loads(payload)
    return [o["code"] for o in payload["observations"]]


def glued_pair(tag: str) -> tuple[list[str], list[str]]:
    """Two ORUs for two patients, control ids `<tag>-A` and `<tag>-B`."""
    return (
        oru(f"{tag}-A", "0010078001", "陈思雨", "OBX|1|NM|HGB^血红蛋白^L||118|g/L|115-150|N|||F"),
        oru(f"{tag}-B", "0010078002", "王小红", "OBX|1|ST|HBSAG^乙肝表面抗原^L||阳性||阴性|A|||F"),
    )


def stored_patients(engine: RunningEngine, tag: str) -> set[tuple[str, str]]:
    """(control id, person key) of every record stored from a `<tag>-` message."""
    with engine.store().connect() as conn:
        found = conn.execute(
            text("select source_control_id, person_key from records where source_control_id like :t"),
            {"t": f"{tag}-%"},
        ).all()
    return {(str(c), str(p)) for c, p in found}


def assert_refused_whole(engine: RunningEngine, raw: bytes, tag: str) -> None:
    """The frame is one rejected journal row with its bytes; no message and no record of either."""
    assert rows(engine, "raw = :raw and status = 'rejected'", raw=raw) == 1
    assert rows(engine, "control_id in (:a, :b)", a=f"{tag}-A", b=f"{tag}-B") == 1
    assert stored_patients(engine, tag) == set()


class TestGluedFrames:
    def test_two_oru_glued_in_one_frame_are_refused_whole_and_never_merged(
        self, engine: RunningEngine
    ) -> None:
        """A then B in one frame: one AR naming B's MSH, one rejected row; B's OBX never reaches A."""
        glued = hl7(*A, *B)
        (ack,) = engine.send([glued])
        code, control, text = msa(ack)
        assert (code, control) == ("AR", "GLUE-A")
        assert "segment 5 is a second MSH" in text
        assert rows(engine, "raw = :raw and status = 'rejected'", raw=glued) == 1
        assert rows(engine, "control_id in ('GLUE-A', 'GLUE-B')") == 1
        # Sent again one per frame, each is accepted and A's record holds only A's result.
        assert [msa(a)[:2] for a in engine.send([hl7(*A), hl7(*B)])] == [("AA", "GLUE-A"), ("AA", "GLUE-B")]
        assert observations(engine, "GLUE-A") == ["HGB"]
        assert observations(engine, "GLUE-B") == ["HBSAG"]

    def test_anything_before_msh_refuses_the_frame(self, engine: RunningEngine) -> None:
        """A segment before MSH (here B's last OBX cut off ahead of A) is AR naming segment 1."""
        frame_ = hl7(B[-1], *oru("PRE-A", "0010077003", "李四"))
        (ack,) = engine.send([frame_])
        code, control, text = msa(ack)
        assert (code, control) == ("AR", "PRE-A")
        assert "segment 1 (OBX) comes before the message's MSH (segment 2)" in text
        assert rows(engine, "raw = :raw and status = 'rejected'", raw=frame_) == 1

    def test_whitespace_and_a_bom_before_msh_are_fine(self, engine: RunningEngine) -> None:
        (ack,) = engine.send([b"\xef\xbb\xbf\r\n " + hl7(*oru("BOM-A", "0010077004", "张三"))])
        assert msa(ack)[:2] == ("AA", "BOM-A")

    @pytest.mark.parametrize(
        ("noise", "tag"), [(b"\xef\xbb\xbf", "GBOM"), (b" ", "GSP"), (b"\t", "GTAB"), (b"\x0c", "GFF")]
    )
    def test_a_bom_or_blank_before_the_second_msh_still_refuses_the_frame(
        self, engine: RunningEngine, noise: bytes, tag: str
    ) -> None:
        """A, then a BOM or a blank, then B's MSH: one AR naming B's MSH; neither patient stored."""
        a, b = glued_pair(tag)
        frame_ = hl7(*a) + noise + hl7(*b)
        (ack,) = engine.send([frame_])
        code, control, text = msa(ack)
        assert (code, control) == ("AR", f"{tag}-A")
        assert "segment 5 is a second MSH outside an FHS/BHS batch" in text
        assert_refused_whole(engine, frame_, tag)

    def test_a_message_glued_on_without_the_final_cr_refuses_the_frame(self, engine: RunningEngine) -> None:
        """A's last segment lacks its CR, so B's MSH sits inside A's OBX: AR naming that segment."""
        a, b = glued_pair("NOCR")
        frame_ = hl7(*a)[:-1] + hl7(*b)
        (ack,) = engine.send([frame_])
        code, control, text = msa(ack)
        assert (code, control) == ("AR", "NOCR-A")
        assert "segment 4 (OBX) holds a second MSH inside it" in text
        assert_refused_whole(engine, frame_, "NOCR")

    @pytest.mark.parametrize(("noise", "tag"), [(b"\xef\xbb\xbf", "BBOM"), (b" ", "BSP")])
    def test_a_bom_or_blank_before_an_msh_in_a_batch_starts_its_own_message(
        self, engine: RunningEngine, noise: bytes, tag: str
    ) -> None:
        """In BHS/BTS, a BOM or blank before B's MSH: B is its own message, stored for its own patient."""
        a, b = glued_pair(tag)
        batch = hl7("BHS|^~\\&|LIS|10") + hl7(*a) + noise + hl7(*b, "BTS|2")
        (ack,) = engine.send([batch])
        assert ack is not None
        assert [s[:3] for s in ack.split(b"\r") if s] == [b"BHS", b"MSH", b"MSA", b"MSH", b"MSA", b"BTS"]
        assert observations(engine, f"{tag}-A") == ["HGB"]
        assert observations(engine, f"{tag}-B") == ["HBSAG"]
        stored = stored_patients(engine, tag)
        assert {c for c, _ in stored} == {f"{tag}-A", f"{tag}-B"}
        assert all(p.endswith("0010078001" if c.endswith("-A") else "0010078002") for c, p in stored), stored

    def test_a_message_glued_on_without_the_final_cr_refuses_the_batch(self, engine: RunningEngine) -> None:
        """In BHS/BTS, A's last OBX without its CR swallows B's MSH: the whole batch is refused."""
        a, b = glued_pair("BNOCR")
        batch = hl7("BHS|^~\\&|LIS|10", *a)[:-1] + hl7(*b, "BTS|2")
        (ack,) = engine.send([batch])
        assert ack is not None
        assert [s[:3] for s in ack.split(b"\r") if s] == [b"BHS", b"MSH", b"MSA", b"ERR", b"BTS"]
        code, control, text = msa(ack)
        assert (code, control) == ("AR", "BNOCR-A")
        assert "segment 5 (OBX) holds a second MSH inside it" in text and "whole batch" in text
        assert_refused_whole(engine, batch, "BNOCR")

    def test_batch_with_a_segment_outside_its_messages_is_refused_whole(self, engine: RunningEngine) -> None:
        """BHS, a stray PID, then two messages: one batch answer holding one AR; nothing accepted."""
        batch = hl7(
            "BHS|^~\\&|LIS|10",
            "PID|1||0010077009^^^HIS^PI||赵六",
            *oru("BATCH-1", "0010077005", "孙七"),
            *oru("BATCH-2", "0010077006", "周八"),
            "BTS|2",
        )
        (ack,) = engine.send([batch])
        assert ack is not None
        segments = [s[:3] for s in ack.split(b"\r") if s]
        assert segments == [b"BHS", b"MSH", b"MSA", b"ERR", b"BTS"]
        code, control, text = msa(ack)
        assert (code, control) == ("AR", "BATCH-1")
        assert "segment 2 (PID) is not inside a message" in text and "whole batch" in text
        assert rows(engine, "raw = :raw and status = 'rejected'", raw=batch) == 1
        assert rows(engine, "control_id = 'BATCH-2'") == 0


class RawPeer:
    """A sender on a plain socket that reads its answers only when told to."""

    def __init__(self, port: int, receive_buffer: int | None = None) -> None:
        self.sock = socket.socket()
        if receive_buffer:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.connect(("127.0.0.1", port))
        self.decoder = MllpDecoder(1 << 20)
        self.answers: list[bytes] = []

    def read_answers(self, count: int, timeout: float = 60.0) -> list[bytes]:
        self.sock.settimeout(timeout)
        while len(self.answers) < count:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                break
            self.answers += [e.payload for e in self.decoder.feed(chunk) if isinstance(e, Frame)]
        return self.answers

    def close(self) -> None:
        self.sock.close()


class TestGarbageBursts:
    def test_5000_stray_start_blocks_are_one_row_and_no_answer(self, engine: RunningEngine) -> None:
        """A burst of 0x0B and junk between start blocks, then a message: only the message is answered."""
        burst = b"\x0b" * 5000 + b"junk" + b"\x0b" + b"\x00\xff" * 50 + b"\x0b"
        peer = RawPeer(engine.port())
        reason = f"{len(burst)} bytes received outside an MLLP frame%"
        (source,) = [s for s in engine.runtime.sources if s.name == "hospital"]
        rejected_before = source.counters.rejected  # one per bad event, each logged once
        logged_before = ENGINE_LOG.mark()
        peer.sock.sendall(burst + frame(hl7(*oru("AFTER-BURST", "0010077007", "吴九"))))
        (answer,) = peer.read_answers(1)
        peer.close()
        wait_until(lambda: rows(engine, "error like :r and status = 'rejected'", r=reason) == 1)
        assert msa(answer)[:2] == ("AA", "AFTER-BURST")
        raw = scalar(engine.journal, "select raw from journal_messages where error like :r", r=reason)
        assert bytes(raw) == burst
        assert source.counters.rejected == rejected_before + 1
        stray = ENGINE_LOG.events(since=logged_before, name="mllp_stray_bytes")
        assert [(e["size"], e["channel"]) for e in stray] == [(len(burst), "hospital")]


class TestUnreadAnswers:
    def test_a_peer_that_never_reads_its_acks_stops_being_read(self, engine: RunningEngine) -> None:
        """Frames keep coming, ACKs are never read: the engine stops reading; reading again resumes."""
        total = 20_000
        message = hl7(*oru("BP-{n:05d}", "0010077008", "郑十"))
        payload = b"".join(frame(message.replace(b"{n:05d}", f"{n:05d}".encode())) for n in range(total))
        peer = RawPeer(engine.port(), receive_buffer=4096)
        (source,) = [s for s in engine.runtime.sources if s.name == "hospital"]
        ours = f"127.0.0.1:{peer.sock.getsockname()[1]}"
        (conn,) = wait_until(lambda: [c for c in source._connections if c.peer == ours])
        # Small kernel buffers on both sides (a slow link), so the engine's own buffering shows.
        conn.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        sender = threading.Thread(target=peer.sock.sendall, args=(payload,), daemon=True)
        sender.start()

        def journaled() -> int:
            return rows(engine, "control_id like 'BP-%'")

        def stalled() -> bool:
            before = journaled()
            time.sleep(2.0)
            return before == journaled()

        wait_until(stalled, timeout=60, interval=0)
        held = journaled()
        buffered = conn.transport.get_write_buffer_size()
        assert held < total, "the engine read every frame though none of its answers were taken"
        assert buffered <= WRITE_HIGH + 256 * 1024, buffered

        answers = peer.read_answers(total, timeout=120)
        sender.join(60)
        peer.close()
        assert len(answers) == total
        assert [msa(a)[1] for a in answers[:3]] == ["BP-00000", "BP-00001", "BP-00002"]
        assert journaled() == total
