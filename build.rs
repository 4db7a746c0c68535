//! Generates the protobuf and gRPC code from `proto/` with the pure-Rust `protox` compiler, so a
//! fresh machine needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/chitty_chat.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    // The Chat server is written by hand (src/server/chat.rs) so that it can write pre-encoded
    // messages; only the messages and the client are generated.
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(fds)?;
    Ok(())
}
