"""The HTTP contract of the REST microservice: its paths and limits.

Shared by the client (cdc_platform.delivery.rest_client), the stream's REST sink and the local
service itself (cdc_local.restapi), so importing it needs no web framework.
"""
BATCH_PATH = "/v1/events/batch"
HEALTH_PATH = "/health"
COUNT_PATH = "/v1/events/count"
EVENTS_PATH = "/v1/events"
FAULTS_PATH = "/v1/admin/faults"

MAX_BATCH_ITEMS = 1000
MAX_KEY_LENGTH = 256
