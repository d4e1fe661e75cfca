"""kombu's `filesystem://` transport, made safe for several processes sharing one folder.

kombu writes a message file in place and claims it with a move to the processed folder, so a
reader in another process can pick up a file that is still empty. Here a message is written
under a temporary name and renamed into place (atomic on POSIX), and a claimed file is renamed
inside the shared folder (atomic too) before it is read. Exchange bindings already live in
kombu's control folder, so topic routing works across processes.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic_ns
from typing import Any

from kombu.transport import filesystem
from kombu.transport.virtual import base as virtual
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

_SUFFIX = ".msg"


class Channel(filesystem.Channel):
    """Filesystem channel with atomic put and claim."""

    # Same signatures as kombu's filesystem.Channel, which itself differs from its base class.
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{monotonic_ns() // 1000:018d}_{uuid.uuid4().hex}.{queue}{_SUFFIX}"
        final = os.path.join(self.data_folder_out, name)
        temporary = os.path.join(self.data_folder_out, f".{name}.tmp")
        try:
            with open(temporary, "wb") as handle:
                handle.write(str_to_bytes(dumps(payload)))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, final)
        except OSError as exc:
            raise filesystem.ChannelError(f"Cannot add message file {final!r}: {exc}") from exc

    def _get(self, queue: str) -> Any:  # type: ignore[override]
        wanted = f"{queue}{_SUFFIX}"
        claimed_dir = self._claimed_folder()
        for filename in sorted(os.listdir(self.data_folder_in)):
            if filename.startswith(".") or filename.partition(".")[2] != wanted:
                continue
            claimed = os.path.join(claimed_dir, filename)
            try:
                os.rename(os.path.join(self.data_folder_in, filename), claimed)
            except OSError:  # another consumer claimed it first
                continue
            try:
                with open(claimed, "rb") as handle:
                    payload = handle.read()
            except OSError as exc:
                raise filesystem.ChannelError(f"Cannot read message file {claimed!r}") from exc
            if not self.store_processed:
                os.remove(claimed)
            return loads(bytes_to_str(payload))
        raise virtual.Empty()

    def _claimed_folder(self) -> str:
        folder: str = self.processed_folder
        os.makedirs(folder, exist_ok=True)
        return folder


class Transport(filesystem.Transport):
    """`filesystem://` with the atomic channel above."""

    Channel = Channel
