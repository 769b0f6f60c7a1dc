"""Recomputes SigV4 signatures with botocore, independently of the gateway's signing code.

stdin: a JSON list of requests as a server received them:
  {method, url, headers: [[name, value], ...] (the signed ones), body_b64,
   access_key_id, secret_access_key, token, region, service}
stdout: a JSON list of the Authorization header botocore computes for each, at the request's
own X-Amz-Date.
"""

import base64
import json
import sys

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def authorization(received):
    headers = {name.lower(): value for name, value in received["headers"]}
    amz_date = headers.pop("x-amz-date")
    headers.pop("x-amz-security-token", None)
    request = AWSRequest(
        method=received["method"],
        url=received["url"],
        data=base64.b64decode(received["body_b64"]),
        headers=headers,
    )
    request.context["timestamp"] = amz_date
    credentials = Credentials(received["access_key_id"], received["secret_access_key"], received.get("token"))
    auth = SigV4Auth(credentials, received["service"], received["region"])
    # What SigV4Auth.add_auth does, at the request's timestamp instead of now.
    auth._modify_request_before_signing(request)
    canonical_request = auth.canonical_request(request)
    string_to_sign = auth.string_to_sign(request, canonical_request)
    signature = auth.signature(string_to_sign, request)
    auth._inject_signature_to_request(request, signature)
    return request.headers["Authorization"]


if __name__ == "__main__":
    print(json.dumps([authorization(r) for r in json.load(sys.stdin)]))
