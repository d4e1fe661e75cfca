from __future__ import annotations

import time
from typing import Any

import pytest
from cqrs_testproject.master_app.models import Author
from cqrs_testproject.master_app.testing import use_recording
from replica_support import payload

from dj_cqrs.consumer import make_handler
from dj_cqrs.observability import metrics
from dj_cqrs.outbox import fast_path

pytestmark = pytest.mark.django_db(transaction=True)


def test_bench(settings: Any) -> None:
    metrics.enable()
    results: dict[str, list[float]] = {"apply_off": [], "apply_on": [], "save_off": [], "save_on": []}
    rev = 0
    for rep in range(4):
        for mode in ("off", "on"):
            metrics.ON = mode == "on"
            handler = make_handler()
            rev += 1
            started = time.perf_counter()
            for b in range(10):
                handler([payload("item", {"id": i, "cqrs_revision": rev * 100 + b, "cqrs_updated": "2026-12-03 12:00:00.000000+00:00", "name": f"n{i}"}) for i in range(100)])
            results[f"apply_{mode}"].append((time.perf_counter() - started) / 1000 * 1e6)
    fast_path.resume()
    rec = use_recording(settings, outbox={"grace": 0.0})
    next(rec)
    for rep in range(4):
        for mode in ("off", "on"):
            metrics.ON = mode == "on"
            started = time.perf_counter()
            for i in range(300):
                Author.objects.create(name=f"a{i}")
            fast_path.flush(60)
            results[f"save_{mode}"].append((time.perf_counter() - started) / 300 * 1e6)
    next(rec, None)
    metrics.ON = False
    lines = [f"BENCH {k}: median {sorted(v)[len(v)//2]:.1f} us/message  all={[round(x,1) for x in v]}" for k, v in results.items()]
    open("/tmp/bench_obs.txt", "w").write("\n".join(lines) + "\n")
