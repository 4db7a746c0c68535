"""A Chitty-Chat participant written with Python's grpcio, with stubs generated from proto/ at
test time. Joins, chats with a Rust participant, leaves; exits non-zero on anything unexpected.
With "gzip", every message it sends is gzip-compressed (grpc-encoding: gzip).

usage: grpc_chat.py HOST:PORT PROTO_DIR [gzip]
"""
import os
import queue
import sys
import tempfile

import grpc
from grpc_tools import protoc


def main():
    addr, proto_dir = sys.argv[1], sys.argv[2]
    gzip = sys.argv[3:] == ["gzip"]
    out = tempfile.mkdtemp(prefix="chitty-py-")
    rc = protoc.main(["protoc", f"-I{proto_dir}", f"--python_out={out}",
                      f"--grpc_python_out={out}", os.path.join(proto_dir, "chitty_chat.proto")])
    assert rc == 0, f"grpc_tools.protoc failed: {rc}"
    sys.path.insert(0, out)
    import chitty_chat_pb2 as pb
    import chitty_chat_pb2_grpc as pb_grpc

    clock = 0
    outgoing = queue.Queue()

    def send(**event):
        nonlocal clock
        clock += 1
        outgoing.put(pb.ChatEvent(timestamp=clock, **event))

    def requests():
        while True:
            ev = outgoing.get()
            if ev is None:
                return
            yield ev

    compression = grpc.Compression.Gzip if gzip else grpc.Compression.NoCompression
    channel = grpc.insecure_channel(addr, compression=compression)
    stub = pb_grpc.ChatStub(channel)
    send(join=pb.ChatEvent.UserJoin(username="pyclient"))
    responses = stub.Broadcast(requests(), timeout=20)
    last = 0

    def receive():
        nonlocal clock, last
        msg = next(responses)
        assert msg.timestamp > last, f"timestamps must increase: {last} then {msg.timestamp}"
        last = msg.timestamp
        clock = max(clock, msg.timestamp) + 1
        print(f"L[{msg.timestamp}] @ {msg.username}: {msg.message}", flush=True)
        return msg

    # chittyd's first message is the welcome (a chitty extension: the id, and what the server
    # offers), then the participant's own join notice.
    welcome = receive()
    assert welcome.kind == pb.ChatMessage.WELCOME and welcome.sender_id > 0, welcome
    assert "direct" in welcome.server.capabilities, welcome
    msg = receive()
    assert msg.username == "SERVER", msg
    assert msg.message == f"Participant pyclient joined Chitty-Chat at Lamport time {msg.timestamp}", msg
    assert msg.subject == "pyclient" and msg.sender_id == welcome.sender_id, msg

    send(message=pb.ChatEvent.ChatMessage(username="pyclient", message="hello from python"))
    while True:
        msg = receive()
        if msg.username == "pyclient":
            assert msg.message == "hello from python", msg
            break
    while True:
        msg = receive()
        if msg.username == "rusty":
            assert msg.message == "hello from rust", msg
            break

    # A refused message comes back privately and the stream stays open. (With gzip, grpcio
    # sends a message uncompressed when compressing would not shrink it; this one it compresses.)
    send(message=pb.ChatEvent.ChatMessage(username="pyclient", message="x" * 129))
    msg = receive()
    assert msg.kind == pb.ChatMessage.ERROR and "too long" in msg.message, msg

    send(leave=pb.ChatEvent.UserLeave(username="pyclient"))
    outgoing.put(None)
    rest = list(responses)  # the server ends the stream cleanly after the leave
    assert rest == [], rest
    print("python participant done", flush=True)


if __name__ == "__main__":
    main()
