"""A WebSocket user written with Python's `websockets` package: connects to chittyd, prints the
user id from its welcome frame, waits for a direct message from a gRPC participant and answers
it by id; also checks that a frame to an unknown id comes back as an error frame.

usage: ws_direct.py HOST:PORT
"""
import asyncio
import json
import sys

import websockets


async def main():
    async with websockets.connect(f"ws://{sys.argv[1]}/") as ws:
        welcome = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert welcome["kind"] == "welcome", welcome
        await ws.send(json.dumps({"recipient_id": 424242, "message": "anyone?"}))
        error = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert error == {**error, "error": "user 424242 is not connected", "recipient_id": 424242}, error
        # Only now tell the test our id, so its message comes after the error frame.
        print(f"ID {welcome['user_id']}", flush=True)

        last = error["timestamp"]
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert msg["timestamp"] > last, (last, msg)
            last = msg["timestamp"]
            if msg.get("message") == "ping from grpc":
                break
        assert msg["username"] == "rusty" and msg["kind"] == "direct", msg
        await ws.send(json.dumps({"recipient_id": msg["sender_id"], "message": "pong from python"}))
        # chittyd sends the sender its own copy: the message was accepted and delivered.
        echo = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert echo["kind"] == "direct" and echo["message"] == "pong from python", echo
        assert echo["sender_id"] == welcome["user_id"] and echo["recipient_id"] == msg["sender_id"], echo
        print("python websocket user done", flush=True)


asyncio.run(main())
