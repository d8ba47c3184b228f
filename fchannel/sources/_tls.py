"""TLS for the network sources, from PEM files (Flume uses Java keystores)."""
from __future__ import annotations

import ssl

from fchannel.agent.properties import Context

KEYSTORE_PROPERTIES = ("keystore", "keystorePassword", "keystore-password", "keystore-type",
                       "keystoreType", "exclude-protocols", "include-protocols",
                       "exclude-cipher-suites", "include-cipher-suites")


def server_tls(ctx: Context) -> ssl.SSLContext | None:
    """A server TLS context from the PEM files ``ssl.cert`` and ``ssl.key``;
    Flume's Java keystore settings are reported as unsupported."""
    for k in KEYSTORE_PROPERTIES:
        if k in ctx:
            ctx.get(k)
            ctx.problem(k, "Java keystores are not supported; give the certificate and key "
                           "as PEM files in ssl.cert and ssl.key")
    cert = ctx.string("ssl.cert", required=True)
    key = ctx.string("ssl.key", required=True)
    if not (cert and key):
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        ctx.problem("ssl.cert", f"cannot read {exc.filename or cert!r}: {exc.strerror}")
    except (OSError, ssl.SSLError) as exc:
        ctx.problem("ssl.cert", f"cannot load the certificate and key ({cert}, {key}): {exc}")
    else:
        return context
    return None
