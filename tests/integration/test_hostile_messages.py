"""A hostile 4 MiB message through the real MLLP listener: answered AR at once, kept, harmless."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from channels.mllp.framing import Frame, MllpDecoder, frame
from support import RunningEngine, hl7, msa, scalar, write_routes

MSH = "MSH|^~\\&|HIS|FY01|MCHENGINE|FY01|20240321083215||ADT^A04^ADT_A01|{}|P|2.5"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    tmp = tmp_path_factory.mktemp("limits")
    channels = {
        "hospital": {"encoding": "utf-8", "max_message_bytes": "8MiB"},
        "tight": {"encoding": "utf-8", "limits": "{max_segments: 4, max_repetitions: 3}"},
    }
    routes = write_routes(tmp, database=f"sqlite:///{tmp}/engine.db", channels=channels)
    with RunningEngine(routes) as running:
        yield running


def adt(control_id: str, pid3: str = "0010023456^^^HIS^PI") -> bytes:
    return hl7(MSH.format(control_id), "EVN|A04|20240321083200", f"PID|1||{pid3}||李四||19940315|F")


def read_frame(sock: socket.socket, decoder: MllpDecoder) -> bytes:
    while True:
        chunk = sock.recv(65536)
        assert chunk, "connection closed by the engine"
        frames = [e.payload for e in decoder.feed(chunk) if isinstance(e, Frame)]
        if frames:
            return frames[0]


@pytest.mark.parametrize(
    ("control_id", "body", "named"),
    [
        ("HOSTILE-REPS", "0^^^HIS^PI" + "~" * (4 << 20), "PID-3: 4194305 repetitions"),
        ("HOSTILE-SEGS", "0^^^HIS^PI\r" + "NTE|1||x\r" * ((4 << 20) // 9), "segment 5001 of"),
    ],
    ids=["repetitions", "segments"],
)
def test_4mib_pathological_message_is_answered_ar_well_under_a_second(
    engine: RunningEngine, control_id: str, body: str, named: str
) -> None:
    """4 MiB of `~` in one field, or of tiny segments, gets AR naming the limit in well under a
    second; the raw bytes are kept as rejected, and the next message on the connection is AA."""
    hostile = adt(control_id, body)
    assert len(hostile) > 4 << 20
    decoder = MllpDecoder(1 << 20)
    with socket.create_connection(("127.0.0.1", engine.port()), timeout=10) as sock:
        start = time.perf_counter()
        sock.sendall(frame(hostile))
        ack = read_frame(sock, decoder)
        elapsed = time.perf_counter() - start
        code, control, text = msa(ack)
        assert (code, control) == ("AR", control_id)
        assert named in text and "this channel's max_" in text
        assert elapsed < 0.8, elapsed
        sock.sendall(frame(adt(control_id + "-NEXT")))
        assert msa(read_frame(sock, decoder))[:2] == ("AA", control_id + "-NEXT")

    def column(name: str) -> object:
        sql = f"select {name} from journal_messages where control_id = :c"
        return scalar(engine.journal, sql, c=control_id)

    assert column("status") == "rejected" and column("error") == text
    assert bytes(column("raw")) == hostile  # type: ignore[arg-type]


def test_limits_set_in_routes_yaml_apply_to_their_channel(engine: RunningEngine) -> None:
    """A channel's own `limits:` decide: 3 identifiers in PID-3 pass, 4 do not; a fifth segment
    is refused; the same messages pass on a channel with the defaults."""
    three = adt("TIGHT-3", "~".join(["1^^^HIS^PI"] * 3))
    four = adt("TIGHT-4", "~".join(["1^^^HIS^PI"] * 4))
    five_segments = adt("TIGHT-SEG") + b"NTE|1||x\rNTE|2||y\r"
    answers = [msa(a) for a in engine.send([three, four, five_segments], channel="tight")]
    assert answers[0][:2] == ("AA", "TIGHT-3")
    assert answers[1] == (
        "AR",
        "TIGHT-4",
        "PID-3: 4 repetitions (segment 3) pass this channel's max_repetitions (3)",
    )
    assert answers[2] == ("AR", "TIGHT-SEG", "NTE: segment 5 of 5 passes this channel's max_segments (4)")
    assert [msa(a)[0] for a in engine.send([four, five_segments])] == ["AA", "AA"]
