"""The REST microservice that receives the stream's change events.

This module holds only the HTTP contract shared with the client
(cdc_platform.delivery.rest_client), so importing it needs no web framework.
The app lives in ``app.py``; run it with ``python -m cdc_platform.restapi``.
"""
BATCH_PATH = "/v1/events/batch"
HEALTH_PATH = "/health"
COUNT_PATH = "/v1/events/count"
EVENTS_PATH = "/v1/events"
FAULTS_PATH = "/v1/admin/faults"

MAX_BATCH_ITEMS = 1000
MAX_KEY_LENGTH = 256
