//! The admin service through the generated client over its Unix socket: the calls chittyctl
//! makes, for tests that cannot run chittyctl (it is another package's binary) or that need a
//! precise answer about the socket itself.

use chitty::pb::admin::admin_client::AdminClient;
use std::path::Path;
use tonic::transport::Channel;

/// A client of the chittyd whose admin socket is at `socket`.
pub async fn client(socket: &Path) -> Result<AdminClient<Channel>, tonic::transport::Error> {
    let socket = socket.to_owned();
    // The URI is required but unused: every connection goes to the socket.
    let channel = tonic::transport::Endpoint::from_static("http://chittyd.admin")
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let socket = socket.clone();
            async move {
                tokio::net::UnixStream::connect(socket)
                    .await
                    .map(hyper_util::rt::TokioIo::new)
            }
        }))
        .await?;
    Ok(AdminClient::new(channel))
}
