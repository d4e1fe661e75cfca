"""kombu's `filesystem://` transport, made safe for several processes sharing one folder.

kombu writes a message file in place and claims it with a move to the processed folder, so a
reader in another process can pick up a file that is still empty, and it deletes the file as
soon as it is read, so a consumer killed before acking loses it. Here a message is written
under a temporary name and renamed into place (atomic on POSIX); a reader claims it by renaming
it into its own folder `.claims/<host>-<pid>-<id>/` and removes it only when the message is
acked, rejected or restored. Claims of a consumer process that died on this host are moved
back into the queue by the next reader. Exchange bindings already live in kombu's control
folder, so topic routing works across processes.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from time import monotonic_ns
from typing import Any

from kombu.transport import filesystem
from kombu.transport.virtual import base as virtual
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

_SUFFIX = ".msg"


_CLAIMS = ".claims"


class Channel(filesystem.Channel):
    """Filesystem channel with atomic put and claim, and claims kept until settled."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._claims: dict[str, str] = {}
        self._recovered = False

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
        if not self._recovered:
            self._recovered = True
            self._recover_dead_claims()
        wanted = f"{queue}{_SUFFIX}"
        claimed_dir = self._claims_folder(self._owner)
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
                    payload = loads(bytes_to_str(handle.read()))
            except OSError as exc:
                raise filesystem.ChannelError(f"Cannot read message file {claimed!r}") from exc
            tag = (payload.get("properties") or {}).get("delivery_tag")
            if tag:
                self._claims[tag] = claimed
            else:  # nothing to settle it by later: settled now, as kombu does
                self._settle_file(claimed)
            return payload
        raise virtual.Empty()

    def basic_ack(self, delivery_tag: Any, multiple: bool = False) -> None:
        super().basic_ack(delivery_tag, multiple)  # type: ignore[no-untyped-call]
        self._release(delivery_tag)

    def basic_reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        # A requeue writes a new copy first.
        super().basic_reject(delivery_tag, requeue)  # type: ignore[no-untyped-call]
        self._release(delivery_tag)

    def _restore(self, message: Any) -> None:
        # The new copy is in place before the claim goes.
        super()._restore(message)  # type: ignore[no-untyped-call]
        self._release(message.delivery_tag)

    def _release(self, delivery_tag: Any) -> None:
        claimed = self._claims.pop(delivery_tag, None)
        if claimed is not None:
            self._settle_file(claimed)

    def _settle_file(self, claimed: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.store_processed:
                os.makedirs(self.processed_folder, exist_ok=True)
                os.replace(claimed, os.path.join(self.processed_folder, os.path.basename(claimed)))
            else:
                os.remove(claimed)

    def _claims_folder(self, owner: str) -> str:
        folder = os.path.join(self.data_folder_in, _CLAIMS, owner)
        os.makedirs(folder, exist_ok=True)
        return folder

    def _recover_dead_claims(self) -> None:
        """Put back the messages claimed by consumer processes of this host that have died."""
        root = os.path.join(self.data_folder_in, _CLAIMS)
        if not os.path.isdir(root):
            return
        host = socket.gethostname()
        for owner in os.listdir(root):
            parts = owner.rsplit("-", 2)  # <host>-<pid>-<id>; host names may contain "-"
            if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
                continue
            if _alive(int(parts[1])):
                continue
            folder = os.path.join(root, owner)
            for filename in os.listdir(folder):
                with contextlib.suppress(OSError):  # another reader put it back first
                    os.rename(
                        os.path.join(folder, filename), os.path.join(self.data_folder_in, filename)
                    )
            with contextlib.suppress(OSError):
                os.rmdir(folder)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Transport(filesystem.Transport):
    """`filesystem://` with the atomic channel above."""

    Channel = Channel
