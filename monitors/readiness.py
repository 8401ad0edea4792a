"""Whether this engine process can do its work: what `/readyz` answers.

Ready means the journal database, every record store and the message bus answer, and,
in a process that has the ingest role, every configured listening channel listens here.
The channels are read from this process's own heartbeat row (engine/heartbeat.py), so
the answer is about this process even when the roles run as several. Cheap on purpose:
no counting over the journal, unlike `status`.
"""

from __future__ import annotations

import os

from core.database import make_engine
from core.masking import masked_url
from core.settings import Settings
from engine import heartbeat
from engine.bus import capabilities_for
from monitors.engine_status import queue_depths, store_errors


def problems(settings: Settings) -> list[str]:
    """Reasons this process is not ready (`kind:subject`), empty when it is."""
    eng = settings.engine
    out: list[str] = []
    db = make_engine(eng.database)
    try:
        beats = heartbeat.read_all(db)
    except Exception as exc:
        beats = []
        out.append(f"journal_unreachable:{masked_url(eng.database)} ({type(exc).__name__})")
    finally:
        db.dispose()
    out += [f"store_unreachable:{url} ({error})" for url, error in store_errors(settings).items() if error]
    if capabilities_for(eng.broker).durable:
        try:
            queue_depths(settings)
        except Exception as exc:
            out.append(f"broker_unreachable:{masked_url(eng.broker)} ({type(exc).__name__})")
    if out:
        return out
    mine = [b for b in beats if b.host == heartbeat.this_host() and b.pid == os.getpid()]
    if not mine:
        return ["no_heartbeat:this process has not written its heartbeat yet"]
    if "ingest" in mine[0].roles:
        listening = {x.channel for x in mine[0].listeners}
        for name, ch in settings.channels.items():
            if ch.listen_at is not None and getattr(ch, "enabled", True) and name not in listening:
                out.append(f"channel_not_listening:{name}")
    return out
