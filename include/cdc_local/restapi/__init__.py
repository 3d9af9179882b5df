"""The REST microservice that receives the stream's change events (a local service).

Its HTTP contract (paths, limits) lives in the shared library, cdc_platform.delivery.rest_contract,
with the client that speaks it. The app lives in ``app.py``; run it with
``python -m cdc_local.restapi``.
"""
