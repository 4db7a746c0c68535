"""Checks chittyd's standard gRPC health service and server reflection with the official Python
packages (grpcio-health-checking, grpcio-reflection), using no chitty proto file at all.

usage: health_reflection.py HOST:PORT
Prints "SERVING" once everything checked out and a health Watch is open, then waits for the
watch to report NOT_SERVING (the test stops the server) and prints "NOT_SERVING".
"""
import sys

import grpc
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def main():
    channel = grpc.insecure_channel(sys.argv[1])
    health = health_pb2_grpc.HealthStub(channel)
    for service in ["", "chitty_chat.Chat"]:
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, (service, reply)
    try:
        health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
        raise AssertionError("an unknown service must be NOT_FOUND")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND, e

    db = ProtoReflectionDescriptorDatabase(channel)
    services = set(db.get_services())
    assert {"chitty_chat.Chat", "grpc.health.v1.Health"} <= services, services
    pool = DescriptorPool(db)
    chat = pool.FindServiceByName("chitty_chat.Chat")
    broadcast = chat.FindMethodByName("Broadcast")
    assert broadcast.client_streaming and broadcast.server_streaming
    assert broadcast.input_type.full_name == "chitty_chat.ChatEvent"
    message = pool.FindMessageTypeByName("chitty_chat.ChatMessage")
    fields = {f.name: f.number for f in message.fields}
    assert fields["timestamp"] == 1 and fields["username"] == 2 and fields["message"] == 3, fields
    assert "kind" in fields and "sender_id" in fields, fields

    watch = health.Watch(health_pb2.HealthCheckRequest(service="chitty_chat.Chat"), timeout=30)
    first = next(watch)
    assert first.status == health_pb2.HealthCheckResponse.SERVING, first
    print("SERVING", flush=True)
    for update in watch:
        if update.status == health_pb2.HealthCheckResponse.NOT_SERVING:
            print("NOT_SERVING", flush=True)
            return
    raise AssertionError("the watch ended without NOT_SERVING")


if __name__ == "__main__":
    main()
