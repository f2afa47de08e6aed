"""Chalice entry point: declares the Connect routes and nothing else.

Every ReservationService method is served at
POST /reservation.ReservationService/<method>; chalicelib.connect does the rest.
With REQUIRE_IAM_AUTH=true (the prod stage's environment, which chalice also
sets while it deploys or packages) API Gateway only lets SigV4-signed calls of
principals allowed execute-api:Invoke through.
"""
import gc
import os

from chalice import Chalice, IAMAuthorizer, Response
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


@app.middleware("http")
def missing_accept_means_anything(event, get_response):
    """HTTP: no Accept header means any type is accepted. Chalice instead refuses
    a binary answer (400) to a request without one, as buf curl and Connect
    clients send; give such requests the `*/*` they mean."""
    if "accept" not in event.headers:
        event.headers = CaseInsensitiveMapping({**event.headers, "accept": "*/*"})
    return get_response(event)


@app.route("/" + SERVICE_NAME + "/{method}", methods=["POST", "GET", "PUT", "PATCH", "DELETE"],
           content_types=["*/*"],
           authorizer=IAMAuthorizer() if os.environ.get("REQUIRE_IAM_AUTH") == "true" else None)
def connect_call(method):
    request = app.current_request
    answer = connect.handle(default_api(), method, request.method, request.headers, request.raw_body or b"")
    return Response(body=answer.body, status_code=answer.status, headers=answer.headers)
