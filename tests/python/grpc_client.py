"""A gRPC client nobody on the project wrote: Python grpcio with stubs generated from proto/.

usage: grpc_client.py PROTO_DIR ADDRESS INDEX QUERY...

Prints one JSON object: the health of "" and INDEX, the tierdex.v1 services seen through
server reflection, and for each query the ids, scores and tiers of the top 10.
"""
import json
import os
import subprocess
import sys
import tempfile

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc


def generate_stubs(proto_dir, out_dir):
    subprocess.run(
        [
            sys.executable, "-m", "grpc_tools.protoc",
            f"-I{proto_dir}", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}",
            os.path.join(proto_dir, "tierdex", "v1", "tierdex.proto"),
        ],
        check=True,
    )
    sys.path.insert(0, out_dir)


def value(message):
    kind = message.WhichOneof("kind")
    if kind == "strings":
        return list(message.strings.values)
    return getattr(message, kind) if kind else None


def main(proto_dir, address, index, queries):
    with tempfile.TemporaryDirectory() as out_dir:
        generate_stubs(proto_dir, out_dir)
        # Imported while the generated modules exist; Python keeps them once loaded.
        from tierdex.v1 import tierdex_pb2, tierdex_pb2_grpc

    channel = grpc.insecure_channel(address)
    health = health_pb2_grpc.HealthStub(channel)
    statuses = {}
    for service in ["", index, "no-such-index"]:
        try:
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            statuses[service] = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        except grpc.RpcError as err:
            statuses[service] = err.code().name

    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    reply = next(reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10))
    services = sorted(service.name for service in reply.list_services_response.service)

    stub = tierdex_pb2_grpc.TierdexStub(channel)
    results = []
    for query in queries:
        request = tierdex_pb2.SearchRequest(index=index, query=query, limit=10, count_total_hits=True)
        reply = stub.Search(request, timeout=30)
        results.append({
            "query": query,
            "ids": [value(hit.id) for hit in reply.hits],
            "scores": [hit.score for hit in reply.hits],
            "tiers": [tierdex_pb2.Tier.Name(hit.tier) for hit in reply.hits],
            "total_hits": reply.total_hits,
        })
    try:
        stub.Search(tierdex_pb2.SearchRequest(index=index, query="title:(unbalanced"), timeout=10)
        bad_query = "OK"
    except grpc.RpcError as err:
        bad_query = err.code().name
    print(json.dumps({"health": statuses, "services": services, "results": results, "bad_query": bad_query}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:])
