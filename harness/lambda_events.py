"""API Gateway proxy events and canned DynamoDB answers, to drive the Lambda entry point offline."""

import base64
import struct

from chalicelib.gen import reservation_pb2 as pb

PATH = "/" + pb.DESCRIPTOR.services_by_name["ReservationService"].full_name + "/"


def proxy_event(method: str, request, streaming: bool = False) -> dict:
    """A REST API proxy event for a binary Connect call, as API Gateway sends it to Lambda (a server
    stream's request in its envelope)."""
    body = request.SerializeToString()
    if streaming:
        body = struct.pack(">BI", 0, len(body)) + body
    return {
        "resource": PATH + "{method}",
        "path": PATH + method,
        "httpMethod": "POST",
        "headers": {"content-type": "application/connect+proto" if streaming else "application/proto"},
        "multiValueHeaders": {},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"method": method},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": PATH + "{method}",
            "httpMethod": "POST",
            "stage": "api",
            "identity": {"sourceIp": "10.0.0.1"},
        },
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
    }


def reserve_request(hours: int = 1) -> pb.ReserveRequest:
    start = 1_795_000_000
    return pb.ReserveRequest(
        reservation=pb.Reservation(
            user_id="alice", resource_id="room-1", start={"seconds": start}, end={"seconds": start + hours * 3600}
        )
    )
