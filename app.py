"""Chalice entry point: the Connect routes, the hold sweep and the change-feed push, nothing else.

Every ReservationService method is served at
POST /reservation.ReservationService/<method>; chalicelib.connect does the rest.
With REQUIRE_IAM_AUTH=true (the prod stage's environment, which chalice also
sets while it deploys or packages) API Gateway only lets SigV4-signed calls of
principals allowed execute-api:Invoke through, and the caller's IAM ARN
decides its tenant (chalicelib.tenancy).
"""

import functools
import gc
import os

from chalice import Chalice, IAMAuthorizer, Rate, Response
from chalice.app import CaseInsensitiveMapping

from chalicelib import connect
from chalicelib.api import SERVICE_NAME
from chalicelib.runtime import default_api

# What the imports made (modules, protobuf descriptors, Chalice) lives as long as the process:
# keep the cyclic garbage collector off it. Otherwise the first call, which builds the DynamoDB
# client, sets off a full collection over all of it: ~20 ms of a ~300 ms cold start.
gc.freeze()

app = Chalice(app_name="my-reservation")
# Protobuf bodies are binary both ways. With */* API Gateway hands every body
# to Lambda base64-encoded (Chalice decodes it) and accepts base64 answers.
app.api.binary_types = ["*/*"]
# The table's stream, for the change-feed push: set per stage in .chalice/config.json
# (chalice package --merge-template infra/ fills it from the table's stack).
STREAM_ARN = os.environ.get("RESERVATION_STREAM_ARN", "arn:aws:dynamodb:us-east-1:000000000000:table/unset/stream/0")


@app.middleware("http")
def missing_accept_means_anything(event, get_response):
    """HTTP: no Accept header means any type is accepted. Chalice instead refuses
    a binary answer (400) to a request without one, as buf curl and Connect
    clients send; give such requests the `*/*` they mean."""
    if "accept" not in event.headers:
        event.headers = CaseInsensitiveMapping({**event.headers, "accept": "*/*"})
    return get_response(event)


@app.route(
    "/" + SERVICE_NAME + "/{method}",
    methods=["POST", "GET", "PUT", "PATCH", "DELETE"],
    content_types=["*/*"],
    authorizer=IAMAuthorizer() if os.environ.get("REQUIRE_IAM_AUTH") == "true" else None,
)
def connect_call(method):
    request = app.current_request
    principal = (request.context or {}).get("identity", {}).get("userArn")
    answer = connect.handle(default_api(), method, request.method, request.headers, request.raw_body or b"", principal)
    return Response(body=answer.body, status_code=answer.status, headers=answer.headers)


@app.schedule(Rate(1, unit=Rate.MINUTES))
def sweep_expired_holds(event):
    """Expired holds block nothing already; this frees their items (and a pool's units) for good."""
    return {"removed": default_api().reservations.sweep_expired()}


@functools.lru_cache(maxsize=1)
def _events_client():
    import botocore.session

    return botocore.session.get_session().create_client("events")


@app.on_dynamodb_record(stream_arn=STREAM_ARN, batch_size=100, starting_position="TRIM_HORIZON")
def push_changes(event):
    """Each change event the table's stream carries goes to the EventBridge bus, once."""
    from chalicelib.publish import entries_from_records, publish

    entries = entries_from_records((record.to_dict() for record in event), os.environ["EVENT_BUS_NAME"])
    publish(_events_client(), entries)
    return {"published": len(entries)}
