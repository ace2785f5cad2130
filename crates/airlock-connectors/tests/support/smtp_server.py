#!/usr/bin/env python3
"""A real SMTP server on loopback for the smtp connector's tests (aiosmtpd).

Usage: smtp_server.py --dir DIR [--user U --password P] [--auth-required]

Binds 127.0.0.1 on a free port and prints `PORT <n>` on stdout once it listens.
Every accepted message is written to DIR as `<n>.eml` (the raw message) and
`<n>.json` (envelope: mail_from, rcpt_tos), each written atomically.
AUTH PLAIN and LOGIN are offered without TLS and accept only the given user/password.
Recipients at `reject.example` get 550, at `busy.example` get 451.
"""

import argparse
import asyncio
import itertools
import json
import os
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Handler:
    def __init__(self, directory):
        self.directory = directory
        self.counter = itertools.count(1)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        domain = address.rpartition("@")[2].lower()
        if domain == "reject.example":
            return "550 5.1.1 mailbox unavailable"
        if domain == "busy.example":
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        n = next(self.counter)
        base = os.path.join(self.directory, str(n))
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8")
        write_atomic(base + ".eml", content)
        meta = {"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos}
        write_atomic(base + ".json", json.dumps(meta).encode("utf-8"))
        return "250 OK queued as %d" % n


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def make_authenticator(user, password):
    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and user is not None
            and auth_data.login == user.encode("utf-8")
            and auth_data.password == password.encode("utf-8")
        )
        # handled=False: aiosmtpd itself answers 535 on failure.
        return AuthResult(success=ok, handled=False)

    return authenticator


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--auth-required", action="store_true")
    args = parser.parse_args()

    handler = Handler(args.dir)
    authenticator = make_authenticator(args.user, args.password) if args.user else None

    def factory():
        return SMTP(
            handler,
            hostname="smtp.test",
            authenticator=authenticator,
            auth_required=args.auth_required,
            auth_require_tls=False,
        )

    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, host="127.0.0.1", port=0)
    port = server.sockets[0].getsockname()[1]
    print("PORT %d" % port, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
