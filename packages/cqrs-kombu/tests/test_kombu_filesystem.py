"""filesystem:// across processes: master and replica are separate processes sharing a folder."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from cqrs_core.constants import SignalType
from cqrs_core.testing.consuming import Recorder, consume_until
from cqrs_core.testing.suite import IDS, make_payload
from cqrs_kombu import KombuTransport

MASTER = textwrap.dedent(
    """
    import sys
    from cqrs_core.constants import SignalType
    from cqrs_core.testing.suite import make_payload
    from cqrs_kombu import KombuTransport

    url, exchange, other = sys.argv[1:4]
    with KombuTransport({"url": url, "exchange": exchange}) as master:
        master.produce_many([make_payload(pk) for pk in range(1, 101)])
        master.produce(make_payload(500, signal_type=SignalType.SYNC, queue=other))
    """
)


def test_master_in_another_process_reaches_replicas(tmp_path):
    """Topic routing works across processes: broadcasts reach every replica's queue, a
    directed SYNC only its target, each message exactly once."""
    url = f"filesystem://{tmp_path / 'shared'}"
    options = {"url": url, "exchange": "cqrs_fs"}
    mine = KombuTransport({**options, "queue": "replica_one"})
    other = KombuTransport({**options, "queue": "replica_two"})
    mine.declare(IDS)
    other.declare(IDS)
    subprocess.run(
        [sys.executable, "-c", MASTER, url, "cqrs_fs", "replica_two"], check=True, timeout=60
    )
    mine_rec, other_rec = Recorder(), Recorder()
    consume_until(mine, mine_rec, lambda: mine_rec.count() >= 100, cqrs_ids=IDS, settle=0.5)
    consume_until(other, other_rec, lambda: other_rec.count() >= 101, cqrs_ids=IDS, settle=0.5)
    assert sorted(mine_rec.pks()) == list(range(1, 101))
    assert sorted(other_rec.pks()) == [*range(1, 101), 500]
    (sync,) = [p for p in other_rec.payloads if p.instance_pk == 500]
    assert sync.signal_type is SignalType.SYNC and sync.queue == "replica_two"


def test_two_consumer_processes_share_one_queue(tmp_path):
    """Two worker processes on one replica queue split the messages; none is taken twice."""
    url = f"filesystem://{tmp_path / 'shared'}"
    options = {"url": url, "exchange": "cqrs_fs", "queue": "replica"}
    KombuTransport(options).declare(IDS)
    with KombuTransport(options) as master:
        master.produce_many([make_payload(pk) for pk in range(1, 201)])
    worker = textwrap.dedent(
        """
        import sys, time
        from cqrs_core.testing.consuming import Recorder, consume_until
        from cqrs_core.testing.suite import IDS
        from cqrs_kombu import KombuTransport
        rec = Recorder()
        t = KombuTransport({"url": sys.argv[1], "exchange": "cqrs_fs", "queue": "replica"})
        state = {"last": time.monotonic(), "n": 0}
        def idle():
            if rec.count() != state["n"]:
                state["n"], state["last"] = rec.count(), time.monotonic()
            return time.monotonic() - state["last"] > 2.0
        consume_until(t, rec, idle, cqrs_ids=IDS, timeout=60)
        print(",".join(str(pk) for pk in rec.pks()))
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", worker, url], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=90)[0].strip() for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    taken = [int(pk) for out in outputs for pk in out.split(",") if pk]
    assert sorted(taken) == list(range(1, 201))
