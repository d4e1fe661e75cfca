"""Transactional outbox of the master: events are committed with the data, then sent.

Every event is INSERTed into `dj_cqrs_outboxevent` in the transaction that changes the model
(`writer`); a SAVE or SYNC is stored without its instance data, which is serialized when the
event is sent (`committed`). After commit the committing thread hands the fresh rows, with a
copy of each instance, to its process's background publisher, which serializes and sends them
in batches and marks them sent with one statement (`background_publisher`); whatever is left (broker down,
timeout, crash) is sent by `manage.py cqrs_relay` (`relay`), which keeps each row's events in
commit order and serializes them from the committed rows. Rows are written claimed by the
process that sends them (`lease`), so the relay never sends them too. While
`dj_cqrs.controller.producer.produce` is patched or a 3.x transport class is configured, and on
SQLite without IMMEDIATE transactions (`sqlite`), events are sent at commit by the committing
thread instead (`dj_cqrs.master.publish.send_at_commit`).

The modules import one way: see docs/architecture.md for the layers.
"""

from __future__ import annotations
