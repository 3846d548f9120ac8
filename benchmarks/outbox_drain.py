"""Outbox drain: deliver 10,000 queued notifications to a local webhook.

Usage::

    python benchmarks/outbox_drain.py [--messages N] [--channels C] [--quick]

A receiver runs in its own process (a small asyncio HTTP/1.1 server with
keep-alive, on 127.0.0.1): it checks each request's ``X-Batchpilot-Signature`` and counts the
distinct ``Idempotency-Key`` values. The state store is SQLite under
``.bench/outbox/`` (the embedded default). ``--messages`` alerts are queued
with ``batchpilot.notify.enqueue`` (one transaction each, as runs and the
monitor do; timed apart), then ``deliver_due`` is called in a loop until the
backlog is empty. ``--channels`` spreads the messages over that many webhook
channels (all to the same receiver), which the deliverer sends to in parallel.

Timed: the drain only (wall time; the deliverer's CPU time is printed too, as
the wall time depends on what else the machine runs). Checked (exit 2 if
not): the receiver saw every key exactly once with a valid signature, and the
store counts every message delivered. Target: >= 500 messages/s.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

from _common import EXIT_BROKEN, REPO, BenchmarkBroken, Targets, print_table, progress, scratch

TARGET_MESSAGES_PER_S = 500.0
SECRET = "bench-signing-secret"


def serve(port_file: str) -> None:
    """The receiver (runs in its own process): counts keys, checks signatures.

    A small asyncio HTTP/1.1 server rather than ``http.server``, which spends
    more CPU per request than the deliverer does and shares the same cores.
    """
    keys: dict[str, int] = {}
    bad = [0]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if path == "/stats":
                    answer = json.dumps({"keys": keys, "bad": bad[0]}).encode()
                else:
                    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                    if headers.get("x-batchpilot-signature") != f"sha256={digest}":
                        bad[0] += 1
                    key = headers.get("idempotency-key", "")
                    keys[key] = keys.get(key, 0) + 1
                    answer = b"ok"
                writer.write(
                    f"HTTP/1.1 200 OK\r\nContent-Length: {len(answer)}\r\n\r\n".encode() + answer
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        with open(port_file, "w") as handle_file:
            handle_file.write(str(server.sockets[0].getsockname()[1]))
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def start_receiver(folder) -> tuple[subprocess.Popen, int]:  # type: ignore[no-untyped-def]
    port_file = folder / "port"
    port_file.unlink(missing_ok=True)
    process = subprocess.Popen([sys.executable, __file__, "--serve", str(port_file)])
    for _ in range(500):
        if port_file.exists() and port_file.read_text():
            return process, int(port_file.read_text())
        time.sleep(0.02)
    process.kill()
    raise BenchmarkBroken("the receiver did not start")


def receiver_stats(port: int) -> dict:  # type: ignore[type-arg]
    request = urllib.request.Request(f"http://127.0.0.1:{port}/stats", data=b"{}", method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def run(messages: int, channel_count: int) -> int:
    sys.path.insert(0, str(REPO / "src"))
    from batchpilot.notify import (
        ChannelRegistry,
        Message,
        Severity,
        SystemClock,
        alert_facts,
        deliver_due,
        enqueue,
        parse_channel,
    )
    from batchpilot.store import RunStore
    from batchpilot.store.outbox import OutboxState

    folder = scratch("outbox")
    shutil.rmtree(folder)
    folder = scratch("outbox")
    receiver, port = start_receiver(folder)
    try:
        store = RunStore(f"sqlite:///{folder / 'state.db'}")
        names = [f"hook{i}" for i in range(channel_count)]
        channels = ChannelRegistry(
            parse_channel(name, f"webhook+http://127.0.0.1:{port}/in?secret={SECRET}")
            for name in names
        )
        clock = SystemClock()
        progress(f"queueing {messages:,} messages over {channel_count} channel(s)")
        started = time.perf_counter()
        for i in range(messages):
            message = Message(
                title=f"pipeline_{i % 50} ran 2.4x slower than usual",
                summary="Run took 38 min; the last 10 good runs took 16 min on average.",
                idempotency_key=f"bench:{i}",
                severity=Severity.WARNING,
                facts=alert_facts(
                    pipeline=f"pipeline_{i % 50}",
                    run_id=f"run-{i}",
                    rule="slow",
                    observed="38 min",
                    baseline="16 min",
                    threshold="32 min",
                ),
                link=f"http://batchpilot.local/runs/run-{i}",
            )
            enqueue(store, message, [names[i % channel_count]], clock)
        enqueue_s = time.perf_counter() - started
        progress(f"queued in {enqueue_s:.2f} s; draining")
        started, cpu_started = time.perf_counter(), time.process_time()
        rounds = 0
        while store.outbox_backlog():
            report = deliver_due(store, channels, clock, limit=500)
            rounds += 1
            if report.failures:
                raise BenchmarkBroken(f"a delivery failed: {report.failures[0].error}")
        drain_s = time.perf_counter() - started
        drain_cpu_s = time.process_time() - cpu_started
        stats = receiver_stats(port)
        counts = store.outbox_counts()
        store.dispose()
    finally:
        receiver.kill()
        receiver.wait()
    seen = stats["keys"]
    if len(seen) != messages or any(n != 1 for n in seen.values()) or stats["bad"]:
        raise BenchmarkBroken(
            f"the receiver saw {len(seen)} keys for {messages} messages "
            f"({sum(n > 1 for n in seen.values())} twice, {stats['bad']} bad signatures)"
        )
    if counts[OutboxState.DELIVERED] != messages:
        raise BenchmarkBroken(f"the store counts {counts} delivered")
    rate = messages / drain_s
    print()
    print_table(
        ["phase", "messages", "s", "messages/s", "rounds"],
        [
            ["enqueue (1 transaction each)", f"{messages:,}", f"{enqueue_s:.2f}",
             f"{messages / enqueue_s:,.0f}", ""],
            ["drain to the webhook", f"{messages:,}", f"{drain_s:.2f}", f"{rate:,.0f}", rounds],
        ],
    )  # fmt: skip
    print(
        f"\ndeliverer CPU: {drain_cpu_s:.2f} s for the drain, "
        f"{drain_cpu_s / messages * 1000:.3f} ms per message "
        f"(a ceiling of {messages / drain_cpu_s:,.0f} messages/s on one free core)"
    )
    targets = Targets()
    targets.check(
        "outbox_drain_messages_per_s",
        rate,
        ">=",
        TARGET_MESSAGES_PER_S,
        unit="msg/s",
        kind="TARGET",
    )
    return targets.report()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="1,000 messages")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    try:
        return run(1_000 if args.quick else args.messages, max(1, args.channels))
    except BenchmarkBroken as exc:
        print(f"benchmark broken: {exc}", file=sys.stderr)
        return EXIT_BROKEN


if __name__ == "__main__":
    sys.exit(main())
