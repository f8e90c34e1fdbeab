"""The independent side of the crash test (tests/integration/crash.rs):
produces a large topic of trades, computes what the VWAP view and the
filtering sink over them must hold, and reads the sink topic back with
confluent-kafka (that is librdkafka) and `isolation.level=read_committed`.
(read_table.py reads the Delta table.) Output is JSON on stdout.

  produce   --brokers B --topic T --partitions P --count N --seed S
            (a JSON summary; the topic is created if need be)
  expected  --count N --seed S --window-seconds W --min-volume V
            (JSON: {"windows": [...], "sink": [[id, symbol, price, volume, ts_ms], ...]})
  sink      --brokers B --topic T [--timeout S]
            (JSON lines: partition, offset, value and the datafibers.* headers)

The trades: trade i of a seed is always the same. Its id is i, it goes to
partition i % P, and its event time is 2024-01-01T00:00:00 + i ms, so
event time increases strictly within each partition: no trade is ever
late, whatever the order the partitions are read in.
"""

import argparse
import json
import math
import random
import sys
import time
import uuid
from datetime import datetime, timedelta

SYMBOLS = ["ACME", "BOLT", "CRUX", "DYNA", "EMBR", "FLUX", "GRIT", "HALO"]
EPOCH = datetime(1970, 1, 1)
BASE_MS = int((datetime(2024, 1, 1) - EPOCH).total_seconds() * 1000)
STEP_MS = 1


def fail(message):
    print(f"crash_check: {message}", file=sys.stderr)
    sys.exit(1)


def generate(count, seed):
    """Yields (id, symbol, price, volume, ts_ms) for the trades of `seed`."""
    rng = random.Random(seed)
    choice, uniform, randint = rng.choice, rng.uniform, rng.randint
    for i in range(count):
        yield i, choice(SYMBOLS), round(uniform(10, 200), 2), randint(1, 1000), BASE_MS + i * STEP_MS


class Iso:
    """`2024-01-01T00:00:03.250`: naive (UTC) ISO 8601 with milliseconds,
    for increasing times (the formatted second is reused)."""

    def __init__(self):
        self.second = None
        self.prefix = ""

    def __call__(self, ts_ms):
        second, ms = divmod(ts_ms, 1000)
        if second != self.second:
            self.second = second
            self.prefix = (EPOCH + timedelta(seconds=second)).isoformat()
        return f"{self.prefix}.{ms:03d}"


def cmd_produce(args):
    from confluent_kafka import KafkaError, KafkaException, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    began = time.monotonic()
    admin = AdminClient({"bootstrap.servers": args.brokers})
    futures = admin.create_topics([NewTopic(args.topic, num_partitions=args.partitions, replication_factor=1)])
    try:
        futures[args.topic].result(30)
    except KafkaException as e:
        if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            fail(f"creating topic {args.topic!r} failed: {e}")
    deadline = time.monotonic() + 30
    while True:
        found = admin.list_topics(args.topic, timeout=10).topics.get(args.topic)
        if found is not None and found.error is None and len(found.partitions) == args.partitions:
            break
        if time.monotonic() > deadline:
            fail(f"topic {args.topic!r} did not appear with {args.partitions} partitions")
        time.sleep(0.1)

    errors = []

    def on_delivery(err, msg):
        if err is not None and len(errors) < 5:
            errors.append(str(err))

    producer = Producer(
        {
            "bootstrap.servers": args.brokers,
            # Only failures are reported: a callback per message would cost
            # more than producing it.
            "on_delivery": on_delivery,
            "delivery.report.only.error": True,
            "acks": "all",
            # Idempotence: a retried batch is never written twice, and
            # order within a partition holds.
            "enable.idempotence": True,
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 500_000,
            "queue.buffering.max.kbytes": 1_048_576,
            # Measured against tansu: a million trades in about 20 s with
            # lz4, 25 s uncompressed.
            "compression.type": "lz4",
            "message.timeout.ms": 120_000,
        }
    )
    partitions = args.partitions
    produce, poll = producer.produce, producer.poll
    iso = Iso()
    per_partition = [0] * partitions
    for i, symbol, price, volume, ts_ms in generate(args.count, args.seed):
        p = i % partitions
        # JSON by hand (the values need no escaping): twice as fast as
        # json.dumps. repr of a float is the shortest text that reads back
        # as the same double.
        value = f'{{"id":{i},"symbol":"{symbol}","price":{price!r},"volume":{volume},"ts":"{iso(ts_ms)}"}}'
        while True:
            try:
                produce(args.topic, value, partition=p, timestamp=ts_ms)
                break
            except BufferError:
                poll(0.05)
        per_partition[p] += 1
        if i % 10_000 == 0:
            poll(0)
    remaining = producer.flush(120)
    if remaining or errors:
        fail(f"{remaining} messages undelivered; errors: {errors}")
    print(
        json.dumps(
            {
                "topic": args.topic,
                "produced": args.count,
                "per_partition": per_partition,
                "seconds": round(time.monotonic() - began, 3),
            }
        )
    )


def cmd_expected(args):
    """The VWAP windows (window_start in microseconds) and the sink's rows
    as [id, symbol, price, volume, ts_ms]."""
    width = args.window_seconds * 1_000_000
    windows = {}
    sink = []
    for i, symbol, price, volume, ts_ms in generate(args.count, args.seed):
        start = (ts_ms * 1000) // width * width
        w = windows.get((symbol, start))
        if w is None:
            w = windows[(symbol, start)] = [[], 0, 0]
        w[0].append(price * volume)
        w[1] += volume
        w[2] += 1
        if volume >= args.min_volume:
            sink.append([i, symbol, price, volume, ts_ms])
    rows = [
        {
            "symbol": symbol,
            "window_start": start,
            "window_end": start + width,
            "vwap": math.fsum(pv) / volume,
            "volume": volume,
            "trades": count,
        }
        for (symbol, start), (pv, volume, count) in sorted(windows.items())
    ]
    print(json.dumps({"windows": rows, "sink": sink}))


def cmd_sink(args):
    """Every message of the topic, read with read_committed: its partition,
    offset, value (text) and datafibers.* headers, as JSON lines."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": args.brokers,
            "group.id": f"crash-check-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "fetch.wait.max.ms": 50,
        }
    )
    deadline = time.monotonic() + args.timeout
    topic = consumer.list_topics(args.topic, timeout=10).topics.get(args.topic)
    if topic is None or topic.error is not None or not topic.partitions:
        fail(f"topic {args.topic!r} not found")
    partitions = sorted(topic.partitions)
    # The end offsets now: everything committed before this read.
    ends = {}
    for p in partitions:
        _, ends[p] = consumer.get_watermark_offsets(TopicPartition(args.topic, p), timeout=10)
    consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in partitions])
    at_end = {p: ends[p] == 0 for p in partitions}
    out = sys.stdout
    count = 0
    while not all(at_end.values()):
        if time.monotonic() > deadline:
            fail(f"read {count} messages of {args.topic!r} within {args.timeout} s; at their end: {at_end}")
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                at_end[msg.partition()] = True
                continue
            fail(f"consuming {args.topic!r}: {msg.error()}")
        headers = {}
        for key, value in msg.headers() or []:
            if key == "datafibers.job":
                headers["job"] = value.decode()
            elif key in ("datafibers.epoch", "datafibers.seq") and value is not None and len(value) == 8:
                headers[key.split(".")[1]] = int.from_bytes(value, "big")
        out.write(
            json.dumps(
                {
                    "partition": msg.partition(),
                    "offset": msg.offset(),
                    "value": None if msg.value() is None else msg.value().decode(),
                    **headers,
                }
            )
        )
        out.write("\n")
        count += 1
        if msg.offset() + 1 >= ends[msg.partition()]:
            at_end[msg.partition()] = True
    consumer.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    generator = argparse.ArgumentParser(add_help=False)
    generator.add_argument("--count", type=int, required=True, help="trades")
    generator.add_argument("--seed", type=int, required=True)

    p = commands.add_parser("produce", parents=[generator])
    p.add_argument("--brokers", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--partitions", type=int, required=True)
    p.set_defaults(run=cmd_produce)

    p = commands.add_parser("expected", parents=[generator])
    p.add_argument("--window-seconds", type=int, required=True)
    p.add_argument("--min-volume", type=int, required=True)
    p.set_defaults(run=cmd_expected)

    p = commands.add_parser("sink")
    p.add_argument("--brokers", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--timeout", type=float, default=120, help="seconds (default 120)")
    p.set_defaults(run=cmd_sink)

    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    # deltalake/pyarrow native thread pools sometimes abort while the
    # interpreter tears them down, after all output was written.
    import os

    os._exit(0)
