//! Hostile gRPC framing: frames over the limit, bytes that are no ChatEvent, compression
//! claims, gzip bombs, and streams that end without a word. Each ends its session the one way
//! the hub ends a violation (counted, audited, the fitting status) or as a plain disconnect,
//! while alice and bob keep chatting.

use chitty::audit::AuditConfig;
use chitty::pb::{self, chat_client::ChatClient, chat_event};
use chitty::server::ServerConfig;
use chitty_testkit::{Bystanders, Raw, TestServer, audit, config, start};
use std::path::Path;
use std::sync::atomic::Ordering;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::codec::CompressionEncoding;

/// What a raw-bytes client sends next.
enum Out {
    /// A gRPC message with exactly these bytes.
    Bytes(Vec<u8>),
    /// No message: the client's request body fails, so hyper resets the stream
    /// (RST_STREAM INTERNAL_ERROR).
    Reset,
}

/// gRPC messages written as given bytes, so a test can send what no generated client would;
/// what comes back is decoded as usual.
#[derive(Clone, Copy)]
struct RawBytesCodec;

struct RawBytesEncoder;

impl tonic::codec::Encoder for RawBytesEncoder {
    type Item = Out;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Out,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        match item {
            Out::Bytes(bytes) => {
                dst.put_slice(&bytes);
                Ok(())
            }
            Out::Reset => Err(tonic::Status::internal("the test resets the stream")),
        }
    }
}

impl tonic::codec::Codec for RawBytesCodec {
    type Encode = Out;
    type Decode = pb::ChatMessage;
    type Encoder = RawBytesEncoder;
    type Decoder = tonic_prost::ProstDecoder<pb::ChatMessage>;

    fn encoder(&mut self) -> RawBytesEncoder {
        RawBytesEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}

/// Opens a Broadcast stream whose messages are the bytes sent on the returned sender; the
/// returned `Raw` reads the server's side (its own sender is unused).
async fn open_raw_bytes(server: &TestServer) -> (mpsc::Sender<Out>, Raw) {
    let channel = tonic::transport::Endpoint::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("channel ready");
    let (tx, rx) = mpsc::channel(16);
    let path = http::uri::PathAndQuery::from_static("/chitty_chat.Chat/Broadcast");
    let stream = grpc
        .streaming(
            tonic::Request::new(ReceiverStream::new(rx)),
            path,
            RawBytesCodec,
        )
        .await
        .expect("open Broadcast")
        .into_inner();
    (tx, Raw::new(None, stream))
}

/// A join event for `name`, encoded.
fn join_bytes(name: &str) -> Out {
    use prost::Message;
    let join = pb::ChatEvent {
        timestamp: 1,
        event: Some(chat_event::Event::Join(chat_event::UserJoin {
            username: name.into(),
        })),
    };
    Out::Bytes(join.encode_to_vec())
}

/// Opens a Broadcast stream through the generated client with `grpc-encoding` set by hand (the
/// client itself compresses nothing) or with the client's own gzip compression.
async fn open_encoded(
    server: &TestServer,
    header: Option<&'static str>,
    gzip: bool,
) -> Result<(Raw, tonic::metadata::MetadataMap), tonic::Status> {
    let mut client = ChatClient::connect(server.url()).await.expect("connect");
    if gzip {
        client = client.send_compressed(CompressionEncoding::Gzip);
    }
    let (tx, rx) = mpsc::channel(16);
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(value) = header {
        request
            .metadata_mut()
            .insert("grpc-encoding", value.parse().unwrap());
    }
    let response = client.broadcast(request).await?;
    let headers = response.metadata().clone();
    Ok((Raw::new(Some(tx), response.into_inner()), headers))
}

/// Joins as `name` over a TCP connection of its own, and returns a second handle on that
/// socket, so the test can end the connection under the client (FIN, no HTTP/2 goodbye).
async fn join_on_own_socket(server: &TestServer, name: &str) -> (Raw, std::net::TcpStream) {
    let stream = std::net::TcpStream::connect(server.addr).unwrap();
    let handle = stream.try_clone().unwrap();
    stream.set_nonblocking(true).unwrap();
    let stream = std::sync::Mutex::new(Some(stream));
    let channel = tonic::transport::Endpoint::from_shared(server.url())
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let stream = stream.lock().unwrap().take();
            async move {
                let stream = stream.ok_or_else(|| std::io::Error::other("one connection only"))?;
                tokio::net::TcpStream::from_std(stream).map(hyper_util::rt::TokioIo::new)
            }
        }))
        .await
        .expect("connect");
    let (tx, rx) = mpsc::channel(16);
    let stream = ChatClient::new(channel)
        .broadcast(ReceiverStream::new(rx))
        .await
        .expect("open Broadcast")
        .into_inner();
    let mut raw = Raw::new(Some(tx), stream);
    raw.send_join(name).await;
    raw.until_joined(name).await;
    (raw, handle)
}

/// A server with a 1 KiB frame limit and an audit file in `dir`.
async fn start_audited(dir: &Path) -> TestServer {
    start(ServerConfig {
        max_frame: 1024,
        audit: AuditConfig {
            file: Some(dir.join("audit.log")),
            ..AuditConfig::default()
        },
        ..config()
    })
    .await
}

#[tokio::test]
async fn bad_grpc_frames_end_the_session_as_a_counted_audited_violation() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let server = start_audited(dir.path()).await;
    let mut chat = Bystanders::join(&server).await;
    let rejected = || server.hub.stats().rejected.load(Ordering::Relaxed);
    let before = rejected();

    // A frame over --max-frame: OUT_OF_RANGE, and the others see big leave.
    let mut big = server.join("big").await;
    big.say_as("big", &"y".repeat(4000)).await;
    let status = big.expect_status().await;
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(status.message().contains("1024"), "{status:?}");
    chat.saw_leave("big").await;
    chat.say(5).await;
    chat.all_arrived().await;
    assert_eq!(rejected(), before + 1, "the oversized frame is counted");

    // Bytes that are no ChatEvent: INVALID_ARGUMENT saying what was wrong.
    let (junk_tx, mut junk) = open_raw_bytes(&server).await;
    junk_tx.send(join_bytes("junk")).await.unwrap();
    junk.until_joined("junk").await;
    junk_tx.send(Out::Bytes(vec![0xff; 12])).await.unwrap();
    let status = junk.expect_status().await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("malformed ChatEvent"),
        "{status:?}"
    );
    chat.saw_leave("junk").await;
    chat.say(5).await;
    chat.all_arrived().await;
    assert_eq!(rejected(), before + 2, "the undecodable frame is counted");

    // Garbage before any join: refused and counted too, with no leave to announce.
    let (anon_tx, mut anon) = open_raw_bytes(&server).await;
    anon_tx.send(Out::Bytes(vec![0xff; 12])).await.unwrap();
    assert_eq!(anon.expect_status().await.code(), Code::InvalidArgument);
    assert_eq!(rejected(), before + 3);

    // A stream the client drops (RST_STREAM CANCEL) or resets for its own failure
    // (INTERNAL_ERROR), and a connection that ends without a word, are plain disconnects.
    let carol = server.join("carol").await;
    chat.bob.until_joined("carol").await;
    drop(carol);
    chat.saw_leave("carol").await;
    let (eve_tx, mut eve) = open_raw_bytes(&server).await;
    eve_tx.send(join_bytes("eve")).await.unwrap();
    eve.until_joined("eve").await;
    chat.bob.until_joined("eve").await;
    eve_tx.send(Out::Reset).await.unwrap();
    chat.saw_leave("eve").await;
    let (dave, socket) = join_on_own_socket(&server, "dave").await;
    chat.bob.until_joined("dave").await;
    socket.shutdown(std::net::Shutdown::Both).unwrap();
    chat.saw_leave("dave").await;
    drop(dave);
    chat.say(5).await;
    chat.all_arrived().await;
    assert_eq!(
        rejected(),
        before + 3,
        "a dropped stream is not a violation"
    );
    assert_eq!(server.hub.participants(), 2);

    let records =
        audit::record_arrives(&audit, |r| r["event"] == "leave" && r["user"] == "dave").await;
    let find = |event: &str, user: &str| {
        records
            .iter()
            .find(|r| r["event"] == event && r["user"] == user)
            .unwrap_or_else(|| panic!("no {event} record for {user}: {records:?}"))
    };
    let reason = |r: &serde_json::Value| r["reason"].as_str().unwrap_or_default().to_owned();
    assert!(
        reason(find("reject", "big")).starts_with("frame_too_large: "),
        "{records:?}"
    );
    assert_eq!(reason(find("leave", "big")), "violation: frame_too_large");
    let junk_reject = reason(find("reject", "junk"));
    assert!(
        junk_reject.starts_with("bad_frame: ") && junk_reject.contains("malformed ChatEvent"),
        "the decoder's detail is kept: {junk_reject}"
    );
    assert_eq!(reason(find("leave", "junk")), "violation: bad_frame");
    let anonymous: Vec<_> = records
        .iter()
        .filter(|r| r["event"] == "reject" && r.get("user").is_none())
        .collect();
    assert_eq!(anonymous.len(), 1, "{records:?}");
    assert!(reason(anonymous[0]).starts_with("bad_frame: "));
    assert_eq!(reason(find("leave", "carol")), "disconnect");
    assert_eq!(reason(find("leave", "dave")), "disconnect");
    assert_eq!(reason(find("leave", "eve")), "disconnect");
    server.shutdown().await;
}

#[tokio::test]
async fn identity_is_no_compression_and_unknown_encodings_are_unimplemented() {
    let server = start(config()).await;
    let mut chat = Bystanders::join(&server).await;

    let (mut dora, headers) = open_encoded(&server, Some("identity"), false)
        .await
        .expect("grpc-encoding: identity is accepted");
    assert_eq!(
        headers.get("grpc-accept-encoding").unwrap(),
        "gzip,identity"
    );
    dora.send_join("dora").await;
    dora.until_joined("dora").await;
    dora.say_as("dora", "plain as ever").await;
    chat.bob
        .until(|m| m.username == "dora" && m.message == "plain as ever")
        .await;

    let status = open_encoded(&server, Some("snappy"), false)
        .await
        .err()
        .expect("snappy is refused");
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert!(status.message().contains("snappy"), "{status:?}");
    assert_eq!(
        status.metadata().get("grpc-accept-encoding").unwrap(),
        "gzip,identity",
        "the refusal says what chittyd takes"
    );
    chat.say(5).await;
    chat.all_arrived().await;
    assert_eq!(server.hub.participants(), 3);
    server.shutdown().await;
}

#[tokio::test]
async fn gzip_requests_are_decoded_and_a_gzip_bomb_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let server = start_audited(dir.path()).await;
    let mut chat = Bystanders::join(&server).await;

    // Every message of this client is gzip-compressed.
    let (mut zed, _) = open_encoded(&server, None, true).await.unwrap();
    zed.send_join("zed").await;
    zed.until_joined("zed").await;
    zed.say_as("zed", "squeezed").await;
    chat.bob
        .until(|m| m.username == "zed" && m.message == "squeezed")
        .await;

    // 256 KiB of one letter compresses to about 300 bytes, well under the 1 KiB frame limit;
    // decompressed it is far over, and decompression stops at the limit: an oversized frame.
    let before = server.hub.stats().rejected.load(Ordering::Relaxed);
    zed.say_as("zed", &"a".repeat(256 << 10)).await;
    let status = zed.expect_status().await;
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    chat.saw_leave("zed").await;
    assert_eq!(
        server.hub.stats().rejected.load(Ordering::Relaxed),
        before + 1
    );
    chat.say(5).await;
    chat.all_arrived().await;
    let records =
        audit::record_arrives(&audit, |r| r["event"] == "leave" && r["user"] == "zed").await;
    let leave = records
        .iter()
        .find(|r| r["event"] == "leave" && r["user"] == "zed")
        .unwrap();
    assert_eq!(leave["reason"], "violation: frame_too_large");
    server.shutdown().await;
}
