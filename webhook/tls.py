"""Serving TLS whose certificate follows its files: rotation without a restart.

`ReloadingTLS.context` is the `ssl.SSLContext` handed to uvicorn. OpenSSL calls its SNI callback
on every ClientHello (with or without a server name: the apiserver dialling an IP sends none),
and the callback stats the two files; when either changed (mtime, size or inode: Secret volumes
swap a symlink), a fresh context is built from them and swapped into the handshake in progress,
and into every later one. A half-written pair (certificate and key that do not match yet) is
ignored and retried on the next handshake, so a rotation never serves a broken pair.

Owns the files' reading; does not own where they come from (`certs`) or the server (`cli`).
"""

from __future__ import annotations

import logging
import os
import ssl
from pathlib import Path

log = logging.getLogger(__name__)

_Stamp = tuple[tuple[int, int, int], tuple[int, int, int]]


class TLSFilesError(RuntimeError):
    """The certificate or key cannot be loaded; the message names the files, never their content."""


class ReloadingTLS:
    def __init__(self, *, cert_file: str | Path, key_file: str | Path) -> None:
        self._cert_file, self._key_file = str(cert_file), str(key_file)
        stamp = self._stamp()
        current = self._load()
        self._stamp_loaded: _Stamp | None = stamp
        self._current = current
        # The context uvicorn holds: it carries the first pair (so a handshake is never
        # certificate-less) and the callback that swaps in the latest one.
        self.context = self._load()
        self.context.sni_callback = self._on_client_hello
        self.reloads = 0
        # Handshakes started: with keep-alive the apiserver reuses connections, so a steadily
        # climbing count means connection churn (and a TLS handshake added to each review).
        self.handshakes = 0

    def _on_client_hello(self, connection: ssl.SSLObject, _name: str | None, _ctx: ssl.SSLContext) -> None:
        self.handshakes += 1
        self.refresh()
        connection.context = self._current

    def refresh(self) -> bool:
        """Reload when the files changed; True when a new pair is now served."""
        try:
            stamp = self._stamp()
        except OSError:
            return False
        if stamp == self._stamp_loaded:
            return False
        try:
            fresh = self._load()
        except TLSFilesError as exc:
            log.warning(
                "TLS files changed but cannot be loaded yet; still serving the previous pair: %s", exc
            )
            return False
        self._current, self._stamp_loaded = fresh, stamp
        self.reloads += 1
        log.info("reloaded the serving certificate", extra={"cert_file": self._cert_file})
        return True

    def _stamp(self) -> _Stamp:
        def one(path: str) -> tuple[int, int, int]:
            st = os.stat(path)
            return (st.st_mtime_ns, st.st_size, st.st_ino)

        return one(self._cert_file), one(self._key_file)

    def _load(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self._cert_file, self._key_file)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or type(exc).__name__
            raise TLSFilesError(f"cannot load {self._cert_file} with {self._key_file}: {reason}") from None
        return context
