"""Names shared by the stream, the DAGs, the tests and the demo: topics, tables, keys.

Change a name here and every part follows; nothing else spells these strings.
"""
# PostgreSQL (source)
PG_DATABASE = "engagement_db"
PG_CONTENT_TABLE = "content"
PG_EVENTS_TABLE = "engagement_events"
PG_HEARTBEAT_TABLE = "cdc_heartbeat"
PUBLICATION = "engagement_pub"
# Debezium's own role: REPLICATION, SELECT on the captured tables, UPDATE on the heartbeat row.
PG_CDC_ROLE = "cdc_debezium"
REPLICATION_SLOT = "cdc_slot"

# Debezium / Kafka Connect
CONNECTOR_NAME = "engagement-postgres-cdc"
TOPIC_PREFIX = "engagement_project1"
EVENTS_TOPIC = f"{TOPIC_PREFIX}.public.{PG_EVENTS_TABLE}"
CONTENT_TOPIC = f"{TOPIC_PREFIX}.public.{PG_CONTENT_TABLE}"
HEARTBEAT_TOPIC = f"__debezium-heartbeat.{TOPIC_PREFIX}"

# Topics owned by the platform
DLQ_TOPIC = f"{TOPIC_PREFIX}.dlq.rest_api"
PARKED_TOPIC = f"{TOPIC_PREFIX}.dlq.parked"
QUARANTINE_TOPIC = f"{TOPIC_PREFIX}.quarantine"
# Written by the stream's core query: every change parsed, validated and enriched once (the change
# log a sink that fell behind is caught up from); events waiting for their content row are parked
# in PENDING_TOPIC.
EVENT_CHANGES_TOPIC = f"{TOPIC_PREFIX}.stream.event_changes"
CONTENT_CHANGES_TOPIC = f"{TOPIC_PREFIX}.stream.content_changes"
PENDING_TOPIC = f"{TOPIC_PREFIX}.stream.pending_events"
# Normalized changes the platform's own repairs make (the cdc_resnapshot sweep's deletes): the core
# query reads it with the Debezium topics and writes each change to every sink and the change log.
REPAIR_CHANGES_TOPIC = f"{TOPIC_PREFIX}.stream.repair_changes"

# The stream's queries: the core query (Debezium topics -> the change log and every live sink, in
# one hop), and a catch-up query per sink that fell behind. Each keeps its Spark checkpoint under
# the checkpoint root in a directory of its name, and its last batch report in STREAM_PROGRESS_DIR there.
STREAM_SINKS = ("cassandra", "redis", "rest")
# The Spark master of the local stack (the spark_default connection).
# Two task slots for two cores: the core batch's fan-out runs a Python worker per slot.
EMBEDDED_SPARK_MASTER = "local[2]"
STREAM_CORE_QUERY = "core"
STREAM_PROGRESS_DIR = "_progress"  # under the checkpoint root: <query>.json, each query's last batch report


def sink_query(sink: str) -> str:
    return f"{sink}_sink"


# The sink queries are catch-up queries: each runs only while its sink is behind the core
# batches (cdc_platform.sink_ledger), and is reported as the core query the rest of the time.
STREAM_QUERIES = (STREAM_CORE_QUERY, *(sink_query(sink) for sink in STREAM_SINKS))

# Cassandra (history, the truth)
CASSANDRA_KEYSPACE = "engagement"
CASSANDRA_EVENTS_TABLE = "engagement_events"
CASSANDRA_CONTENT_TABLE = "content"
# Roles: the admin owns the schema (provisioning, reconcile); the sink only reads and writes.
CASSANDRA_ADMIN_ROLE = "cdc_admin"
CASSANDRA_SINK_ROLE = "cdc_sink"

# Redis (real-time aggregates); the first three are the seed's names.
REDIS_COUNTS = "engagement_realtime_counts"
REDIS_10M = "engagement_10m"
REDIS_AVG_PCT = "engagement_realtime_avg_pct"
REDIS_PCT_SUM = "engagement_pct_sum"          # hash content_id -> sum of pct
REDIS_PCT_COUNT = "engagement_pct_count"      # hash content_id -> events with a pct
REDIS_MINUTE_PREFIX = "engagement_minute:"    # + epoch minute: zset content_id -> count
REDIS_DEVICE_PREFIX = "engagement_device:"    # + device: hash of device insights
REDIS_DEVICES = "engagement_devices"          # set of devices seen
REDIS_ROW_PREFIX = "engagement_row:"          # + row id: last-applied position and contribution
REDIS_WATERMARK = "engagement_watermark"      # hash: last batch id, max position, max event time
REDIS_RECONCILE_PENDING = "engagement_reconcile_pending"  # hash row id -> where the sinks disagree, since when
# Set on an empty Redis by provisioning and by each reconcile that leaves Redis equal to Cassandra;
# never by the stream. Missing while Cassandra holds rows: Redis lost its data (a flush, a restart
# without persistence), so reconcile restores it at once instead of waiting for rows to settle.
REDIS_STATE_MARKER = "engagement_state_marker"

# REST fan-out: the consumer group of the DLQ reprocess job (the watchdog measures its lag).
DLQ_REPROCESS_GROUP = f"{TOPIC_PREFIX}.dlq-reprocess"
# The watchdog counts new quarantine records through this group's committed offsets.
WATCHDOG_QUARANTINE_GROUP = f"{TOPIC_PREFIX}.watchdog-quarantine"
