"""A real SMTP server for Tonearm's tests, on aiosmtpd.

Each message it accepts is written to DIR as its own .eml file, so a test counts what was
delivered, duplicates included. While DIR/refuse exists it answers every message with
451 (try again later), as a relay in trouble would.

    python3 relay.py --port 2525 --dir /tmp/mail
"""

import argparse
import asyncio
import os
import pathlib
import signal
import time
import uuid

from aiosmtpd.controller import Controller


class Keep:
    def __init__(self, directory: pathlib.Path):
        self.directory = directory

    async def handle_DATA(self, server, session, envelope):
        if (self.directory / "refuse").exists():
            return "451 4.3.0 Try again later"
        name = f"{time.time_ns()}-{uuid.uuid4().hex}.eml"
        partial = self.directory / f".{name}.partial"
        partial.write_bytes(envelope.original_content)
        os.rename(partial, self.directory / name)
        return "250 2.0.0 Accepted"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=pathlib.Path, required=True)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    controller = Controller(Keep(args.dir), hostname="127.0.0.1", port=args.port)
    controller.start()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.run_until_complete(stop.wait())
    controller.stop()


if __name__ == "__main__":
    main()
