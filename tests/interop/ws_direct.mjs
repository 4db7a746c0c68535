// A WebSocket user written with Node's `ws` package (from npm, or Debian's node-ws): the same
// part as ws_direct.py, through a second WebSocket implementation we did not write. Connects to
// chittyd, checks that a frame to an unknown id comes back as an error frame, prints its user id,
// waits for a direct message from a gRPC participant and answers it by id.
//
// usage: node ws_direct.mjs HOST:PORT   (NODE_PATH names the directory holding `ws`)
import { createRequire } from "node:module";
import assert from "node:assert/strict";

const require = createRequire(import.meta.url);
const WebSocket = require("ws");

const ws = new WebSocket(`ws://${process.argv[2]}/`);
const frames = [];
let waiting = null;
ws.on("message", (data) => {
  frames.push(JSON.parse(data.toString()));
  if (waiting) {
    const wake = waiting;
    waiting = null;
    wake();
  }
});
ws.on("error", (e) => {
  console.error(`websocket error: ${e.message}`);
  process.exit(1);
});
ws.on("close", (code, reason) => {
  if (!done) {
    console.error(`closed early: ${code} ${reason}`);
    process.exit(1);
  }
});
let done = false;

// The next frame, or a failure after 10 s.
async function recv() {
  const timer = setTimeout(() => {
    console.error("no frame within 10 s");
    process.exit(1);
  }, 10_000);
  while (frames.length === 0) {
    await new Promise((wake) => (waiting = wake));
  }
  clearTimeout(timer);
  return frames.shift();
}

await new Promise((open) => ws.once("open", open));
const welcome = await recv();
assert.equal(welcome.kind, "welcome");
ws.send(JSON.stringify({ recipient_id: 424242, message: "anyone?" }));
const error = await recv();
assert.equal(error.error, "user 424242 is not connected");
assert.equal(error.recipient_id, 424242);
// Only now tell the test our id, so its message comes after the error frame.
console.log(`ID ${welcome.user_id}`);

let last = error.timestamp;
let msg;
for (;;) {
  msg = await recv();
  assert.ok(msg.timestamp > last, `timestamps went from ${last} to ${msg.timestamp}`);
  last = msg.timestamp;
  if (msg.message === "ping from grpc") break;
}
assert.equal(msg.username, "rusty");
assert.equal(msg.kind, "direct");
ws.send(JSON.stringify({ recipient_id: msg.sender_id, message: "pong from node" }));
// chittyd sends the sender its own copy: the message was accepted and delivered.
const echo = await recv();
assert.equal(echo.kind, "direct");
assert.equal(echo.message, "pong from node");
assert.equal(echo.sender_id, welcome.user_id);
assert.equal(echo.recipient_id, msg.sender_id);
console.log("node websocket user done");
done = true;
ws.close(1000);
