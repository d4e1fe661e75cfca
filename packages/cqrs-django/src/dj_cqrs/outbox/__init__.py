"""Transactional outbox of the master: events are committed with the data, then sent.

Every event is serialized and INSERTed into `dj_cqrs_outboxevent` in the transaction that
changes the model (`writer`). After commit the committing thread hands the fresh rows to its
process's background publisher, which sends them in batches and marks them sent with one
statement (`fast_path`); whatever is left (broker down, timeout, crash) is sent by
`manage.py cqrs_relay` (`relay`), which keeps each row's events in commit order.
"""

from __future__ import annotations
