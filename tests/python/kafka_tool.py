"""An independent Kafka client for the integration tests (confluent-kafka,
that is librdkafka, plus its Avro serializer): creates topics, produces
deterministic trades, reads topics back, and computes independently what a
windowed VWAP view over the trades must produce. Every subcommand prints
JSON on stdout.

  create-topic   --brokers B --topic T --partitions N
  produce-trades --brokers B --topic T --partitions N --format json|csv|avro
                 [--registry URL] --count C --seed S [--first I] [--last J]
                 [--bad K] [--sentinels]
  trades         --count C --seed S [--first I] [--last J]
  expected-vwap  --count C --seed S [--first I] [--last J] --window-seconds W
  consume        --brokers B --topic T [--isolation read_committed]
                 [--timeout S] [--expect N] [--value-format text|avro --registry URL]

The trades: trade i of a seed is always the same. Its symbol is one of
SYMBOLS, its partition is fixed by its symbol (the symbol's index modulo
the partition count; the key is the symbol), and its event time is
2024-01-01T00:00:05 + i * 100 ms less up to 4 s of disorder, in whole
milliseconds, so within a partition no trade is more than 5 s older than
one before it (none is late for a `ts - INTERVAL '5' SECOND` watermark).
"""

import argparse
import json
import math
import random
import sys
import time
import uuid
from datetime import datetime, timedelta

SYMBOLS = ["ACME", "BOLT", "CRUX", "DYNA", "EMBR"]
EPOCH = datetime(1970, 1, 1)
BASE_MS = int((datetime(2024, 1, 1) - EPOCH).total_seconds() * 1000) + 5_000
STEP_MS = 100
MAX_DISORDER_MS = 4_000
# Sentinels are a day after the first trade: far enough that every window
# of any test's trades closes, and their own windows stay open.
SENTINEL_MS = BASE_MS + 86_400_000

AVRO_SCHEMA = json.dumps(
    {
        "type": "record",
        "name": "Trade",
        "namespace": "datafibers.tests",
        "fields": [
            {"name": "symbol", "type": "string"},
            {"name": "price", "type": "double"},
            {"name": "volume", "type": "long"},
            {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        ],
    }
)


# ---------------------------------------------------------------- trades


def generate(count, seed):
    """The first `count` trades of `seed`: dicts with symbol, price,
    volume and ts_ms (milliseconds since the epoch)."""
    rng = random.Random(seed)
    trades = []
    for i in range(count):
        symbol = rng.choice(SYMBOLS)
        price = round(rng.uniform(10, 200), 2)
        volume = rng.randint(1, 1000)
        ts_ms = BASE_MS + i * STEP_MS - rng.randint(0, MAX_DISORDER_MS)
        trades.append({"index": i, "symbol": symbol, "price": price, "volume": volume, "ts_ms": ts_ms})
    return trades


def selected(args):
    """The trades [first, last) of the generated sequence."""
    trades = generate(args.count, args.seed)
    last = args.count if args.last is None else args.last
    return trades[args.first : last]


def iso(ts_ms):
    """`2024-01-01T00:00:03.250`: naive (UTC) ISO 8601 with milliseconds."""
    return (EPOCH + timedelta(milliseconds=ts_ms)).isoformat(timespec="milliseconds")


def partition_of(symbol, partitions):
    return SYMBOLS.index(symbol) % partitions


# ---------------------------------------------------------------- encoding


class Encoder:
    """Encodes trades (and malformed records) in one format."""

    def __init__(self, fmt, registry, topic):
        self.fmt = fmt
        self.avro = None
        if fmt == "avro":
            if not registry:
                fail("--format avro requires --registry URL")
            from confluent_kafka.schema_registry import SchemaRegistryClient
            from confluent_kafka.schema_registry.avro import AvroSerializer
            from confluent_kafka.serialization import MessageField, SerializationContext

            client = SchemaRegistryClient({"url": registry})
            self.avro = AvroSerializer(client, AVRO_SCHEMA)
            self.context = SerializationContext(topic, MessageField.VALUE)

    def trade(self, t):
        if self.fmt == "json":
            return json.dumps(
                {"symbol": t["symbol"], "price": t["price"], "volume": t["volume"], "ts": iso(t["ts_ms"])}
            ).encode()
        if self.fmt == "csv":
            return f"{t['symbol']},{t['price']!r},{t['volume']},{iso(t['ts_ms'])}".encode()
        record = {"symbol": t["symbol"], "price": t["price"], "volume": t["volume"], "ts": t["ts_ms"] * 1000}
        return self.avro(record, self.context)

    def bad(self, j, like):
        """Malformed record number j, alternating two kinds: not the format
        at all, and the right shape with a value that cannot be decoded."""
        if j % 2 == 0:
            kind = "garbage"
            value = {"json": b"this is not json", "csv": b"garbage", "avro": b"this is not avro"}[self.fmt]
        elif self.fmt == "json":
            kind = "bad price"
            value = json.dumps(
                {"symbol": like["symbol"], "price": "twelve", "volume": like["volume"], "ts": iso(like["ts_ms"])}
            ).encode()
        elif self.fmt == "csv":
            kind = "bad price"
            value = f"{like['symbol']},twelve,{like['volume']},{iso(like['ts_ms'])}".encode()
        else:
            # The Confluent header (magic byte, schema id) of a valid record
            # followed by a body cut short inside the first field.
            kind = "truncated"
            value = self.trade(like)[:7]
        return kind, value


# ---------------------------------------------------------------- commands


def fail(message):
    print(f"kafka_tool: {message}", file=sys.stderr)
    sys.exit(1)


def ensure_topic(brokers, topic, partitions):
    """Creates the topic; returns whether it was created (an existing topic
    with the same partition count is fine)."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": brokers})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    try:
        futures[topic].result(30)
        created = True
    except KafkaException as e:
        if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            fail(f"creating topic {topic!r} failed: {e}")
        created = False
    # Wait until the topic's partitions are visible in metadata.
    deadline = time.monotonic() + 30
    while True:
        metadata = admin.list_topics(topic, timeout=10)
        found = metadata.topics.get(topic)
        if found is not None and found.error is None and len(found.partitions) > 0:
            if len(found.partitions) != partitions:
                fail(f"topic {topic!r} has {len(found.partitions)} partitions, not {partitions}")
            return created
        if time.monotonic() > deadline:
            fail(f"topic {topic!r} did not appear in metadata")
        time.sleep(0.1)


def cmd_create_topic(args):
    created = ensure_topic(args.brokers, args.topic, args.partitions)
    print(json.dumps({"topic": args.topic, "partitions": args.partitions, "created": created}))


def cmd_produce_trades(args):
    from confluent_kafka import Producer

    ensure_topic(args.brokers, args.topic, args.partitions)
    trades = selected(args)
    encoder = Encoder(args.format, args.registry, args.topic)
    producer = Producer(
        {
            "bootstrap.servers": args.brokers,
            "acks": "all",
            # One request in flight per partition: a retry never reorders.
            "max.in.flight.requests.per.connection": 1,
            "linger.ms": 5,
            "message.timeout.ms": 60_000,
        }
    )
    # Malformed record j goes right before good trade bad_at[j], on
    # partition j % partitions.
    bad_at = [(j + 1) * len(trades) // (args.bad + 1) for j in range(args.bad)]
    messages = []  # (partition, key, value, timestamp ms, what)
    j = 0
    for n, t in enumerate(trades):
        while j < args.bad and bad_at[j] == n:
            kind, value = encoder.bad(j, t)
            p = j % args.partitions
            messages.append((p, SYMBOLS[p], value, t["ts_ms"], {"bad": j, "kind": kind, "before_trade": t["index"]}))
            j += 1
        p = partition_of(t["symbol"], args.partitions)
        messages.append((p, t["symbol"], encoder.trade(t), t["ts_ms"], None))
    if args.sentinels:
        for p in range(args.partitions):
            symbol = next(s for s in SYMBOLS if partition_of(s, args.partitions) == p)
            sentinel = {"symbol": symbol, "price": 1.0, "volume": 1, "ts_ms": SENTINEL_MS + p}
            messages.append((p, symbol, encoder.trade(sentinel), sentinel["ts_ms"], {"sentinel": p}))

    delivered = {}
    errors = []

    def on_delivery(err, msg, n):
        if err is not None:
            errors.append(f"message {n}: {err}")
        else:
            delivered[n] = (msg.partition(), msg.offset())

    for n, (p, key, value, ts_ms, _) in enumerate(messages):
        while True:
            try:
                producer.produce(
                    args.topic,
                    value=value,
                    key=key.encode(),
                    partition=p,
                    timestamp=ts_ms,
                    on_delivery=lambda err, msg, n=n: on_delivery(err, msg, n),
                )
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(60)
    if remaining or errors or len(delivered) != len(messages):
        fail(f"{remaining} messages undelivered; errors: {errors[:5]}")

    per_partition = {}
    bad = []
    sentinels = []
    for n, (p, _, _, _, what) in enumerate(messages):
        per_partition[str(p)] = per_partition.get(str(p), 0) + 1
        partition, offset = delivered[n]
        if what and "bad" in what:
            bad.append({"partition": partition, "offset": offset, **what})
        elif what and "sentinel" in what:
            sentinels.append({"partition": partition, "offset": offset})
    print(
        json.dumps(
            {
                "topic": args.topic,
                "produced": len(messages),
                "trades": len(trades),
                "per_partition": per_partition,
                "bad": bad,
                "sentinels": sentinels,
            }
        )
    )


def cmd_trades(args):
    for t in selected(args):
        print(json.dumps({**t, "ts": iso(t["ts_ms"]), "ts_us": t["ts_ms"] * 1000}))


def cmd_expected_vwap(args):
    width = args.window_seconds * 1_000_000
    windows = {}
    for t in selected(args):
        start = (t["ts_ms"] * 1000) // width * width
        w = windows.setdefault((t["symbol"], start), ([], 0, 0))
        w[0].append(t["price"] * t["volume"])
        windows[(t["symbol"], start)] = (w[0], w[1] + t["volume"], w[2] + 1)
    rows = []
    for (symbol, start), (pv, volume, count) in sorted(windows.items()):
        rows.append(
            {
                "symbol": symbol,
                "window_start": start,
                "window_end": start + width,
                "vwap": math.fsum(pv) / volume,
                "volume": volume,
                "trades": count,
            }
        )
    print(json.dumps(rows))


def cmd_consume(args):
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    decode = None
    if args.value_format == "avro":
        if not args.registry:
            fail("--value-format avro requires --registry URL")
        from confluent_kafka.schema_registry import SchemaRegistryClient
        from confluent_kafka.schema_registry.avro import AvroDeserializer
        from confluent_kafka.serialization import MessageField, SerializationContext

        deserializer = AvroDeserializer(SchemaRegistryClient({"url": args.registry}))
        context = SerializationContext(args.topic, MessageField.VALUE)

        def decode(value):
            record = deserializer(value, context)
            return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in record.items()}

    consumer = Consumer(
        {
            "bootstrap.servers": args.brokers,
            "group.id": f"kafka-tool-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": args.isolation,
            "fetch.wait.max.ms": 50,
        }
    )
    deadline = time.monotonic() + args.timeout
    while True:
        metadata = consumer.list_topics(args.topic, timeout=10)
        topic = metadata.topics.get(args.topic)
        if topic is not None and topic.error is None and topic.partitions:
            break
        if time.monotonic() > deadline:
            fail(f"topic {args.topic!r} not found: {topic.error if topic else 'no metadata'}")
        time.sleep(0.2)
    partitions = sorted(topic.partitions)
    consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in partitions])

    at_end = {p: False for p in partitions}
    messages = []
    while True:
        if all(at_end.values()) and len(messages) >= args.expect:
            break
        if time.monotonic() > deadline:
            break
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                at_end[msg.partition()] = True
                continue
            fail(f"consuming {args.topic!r}: {msg.error()}")
        at_end[msg.partition()] = False
        key = msg.key()
        message = {
            "partition": msg.partition(),
            "offset": msg.offset(),
            "key": key.decode("utf-8", errors="replace") if key is not None else None,
            "value": None,
            "timestamp": msg.timestamp()[1],
        }
        value = msg.value()
        if value is None:
            pass
        elif decode is None:
            message["value"] = value.decode("utf-8", errors="replace")
        else:
            try:
                message["value"] = decode(value)
            except Exception as e:  # a malformed record: show it, go on
                message["error"] = f"{type(e).__name__}: {e}"
                message["value_hex"] = value.hex()
        messages.append(message)
    consumer.close()
    messages.sort(key=lambda m: (m["partition"], m["offset"]))
    for m in messages:
        print(json.dumps(m))
    if len(messages) < args.expect or not all(at_end.values()):
        fail(
            f"read {len(messages)} messages of {args.topic!r} within {args.timeout} s "
            f"(expected at least {args.expect}; partitions at their end: {at_end})"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    topic = argparse.ArgumentParser(add_help=False)
    topic.add_argument("--brokers", required=True)
    topic.add_argument("--topic", required=True)

    generator = argparse.ArgumentParser(add_help=False)
    generator.add_argument("--count", type=int, required=True, help="trades in the sequence")
    generator.add_argument("--seed", type=int, required=True)
    generator.add_argument("--first", type=int, default=0, help="first trade to take (default 0)")
    generator.add_argument("--last", type=int, help="trade to stop before (default --count)")

    p = commands.add_parser("create-topic", parents=[topic])
    p.add_argument("--partitions", type=int, required=True)
    p.set_defaults(run=cmd_create_topic)

    p = commands.add_parser("produce-trades", parents=[topic, generator])
    p.add_argument("--partitions", type=int, required=True)
    p.add_argument("--format", choices=["json", "csv", "avro"], required=True)
    p.add_argument("--registry", help="schema registry URL (avro)")
    p.add_argument("--bad", type=int, default=0, help="malformed records to insert among the trades")
    p.add_argument(
        "--sentinels",
        action="store_true",
        help="end with one trade per partition a day later, so every window of the trades closes",
    )
    p.set_defaults(run=cmd_produce_trades)

    p = commands.add_parser("trades", parents=[generator])
    p.set_defaults(run=cmd_trades)

    p = commands.add_parser("expected-vwap", parents=[generator])
    p.add_argument("--window-seconds", type=int, required=True)
    p.set_defaults(run=cmd_expected_vwap)

    p = commands.add_parser("consume", parents=[topic])
    p.add_argument("--isolation", choices=["read_uncommitted", "read_committed"], default="read_uncommitted")
    p.add_argument("--timeout", type=float, default=30, help="seconds (default 30)")
    p.add_argument("--expect", type=int, default=0, help="wait for at least this many messages")
    p.add_argument("--value-format", choices=["text", "avro"], default="text")
    p.add_argument("--registry", help="schema registry URL (--value-format avro)")
    p.set_defaults(run=cmd_consume)

    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
