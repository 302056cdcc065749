"""A TLS gRPC client nobody on the project wrote: Python grpcio with `ssl_channel_credentials`.

usage: tls_client.py PROTO_DIR ADDRESS INDEX QUERY CASES_JSON

CASES_JSON is a list of cases, each {"name": ..., "plaintext": true} (an insecure channel) or
{"name": ..., "ca": PATH, "cert": PATH, "key": PATH} (a secure channel trusting the CA file,
presenting the client certificate and key when given). Each case runs one search of QUERY on a
fresh channel. Prints one JSON object: {name: {"code": "OK" or the gRPC status code,
"ids": [...], "details": "..."}}.
"""
import json
import sys
import tempfile

import grpc

# The plaintext client's stub generation and value reading (same directory).
from grpc_client import generate_stubs, value


def read(path):
    if path is None:
        return None
    with open(path, "rb") as file:
        return file.read()


def main(proto_dir, address, index, query, cases):
    with tempfile.TemporaryDirectory() as out_dir:
        generate_stubs(proto_dir, out_dir)
        # Imported while the generated modules exist; Python keeps them once loaded.
        from tierdex.v1 import tierdex_pb2, tierdex_pb2_grpc

    results = {}
    for case in cases:
        if case.get("plaintext"):
            channel = grpc.insecure_channel(address)
        else:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=read(case["ca"]),
                private_key=read(case.get("key")),
                certificate_chain=read(case.get("cert")),
            )
            channel = grpc.secure_channel(address, credentials)
        stub = tierdex_pb2_grpc.TierdexStub(channel)
        try:
            reply = stub.Search(tierdex_pb2.SearchRequest(index=index, query=query, limit=10), timeout=20)
            results[case["name"]] = {"code": "OK", "ids": [value(hit.id) for hit in reply.hits], "details": ""}
        except grpc.RpcError as err:
            results[case["name"]] = {"code": err.code().name, "ids": [], "details": err.details() or ""}
        channel.close()
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5]))
