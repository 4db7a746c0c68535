//! The WebSocket gateway: JSON text frames on the chat port, translated onto the hub.
//!
//! `ws://HOST:PORT/` gives a direct-message-only user (an id from the one sequence, announced in
//! a welcome frame); `/?username=NAME` joins the broadcast room as well. Clients send
//! `{"recipient_id": 2, "message": "…"}` (without `recipient_id`, room members broadcast) and
//! receive `{"sender_id": 1, "message": "…", …}` plus added fields (`kind`, `timestamp`,
//! `username`, …). Bad input gets a JSON error frame and the connection stays open; abuse
//! (oversized or non-UTF-8 frames, frames the RFC forbids) closes it with the fitting close code.
//!
//! chittyd does the handshake ([`handshake`]) and the framing ([`codec`]) itself. A good
//! handshake leaves the session in the connection's [`Handover`]; once hyper has sent the 101,
//! the connection's own task (`server::connection`) runs it ([`driver`]), so a WebSocket
//! connection is one task from accept to close like any other. [`protocol`] is the JSON
//! protocol: what a client frame means and how a session's end becomes a close code.

pub mod codec;
mod driver;
mod handshake;
mod protocol;

pub use protocol::{FrameError, Incoming, parse};

use crate::server::ConnInfo;
use axum::body::Body;
use axum::extract::{Query, Request};
use axum::response::{IntoResponse, Response};
use handshake::HandshakeError;
use http::{HeaderValue, StatusCode, header};
use hyper::upgrade::OnUpgrade;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// Query parameters of the upgrade request.
#[derive(Debug, Deserialize)]
pub struct Params {
    /// Join the broadcast room under this name.
    username: Option<String>,
}

/// A WebSocket session accepted by the handshake, waiting for hyper to hand over the connection.
pub(crate) struct Pending {
    upgrade: OnUpgrade,
    username: Option<String>,
}

impl Pending {
    /// Runs the session on the upgraded connection until it closes.
    pub(crate) async fn run(self, hub: Arc<crate::hub::Hub>, peer: SocketAddr, max_frame: usize) {
        match self.upgrade.await {
            Ok(io) => {
                let io = hyper_util::rt::TokioIo::new(io);
                driver::serve(io, hub, peer.to_string(), self.username, max_frame).await;
            }
            Err(e) => tracing::debug!("WebSocket upgrade from {peer} failed: {e}"),
        }
    }
}

/// Where the handshake leaves a [`Pending`] session for the connection's task. One per
/// connection; at most one request on it can upgrade, since the upgrade ends its HTTP.
#[derive(Clone, Default)]
pub(crate) struct Handover(Arc<Mutex<Option<Pending>>>);

impl Handover {
    fn put(&self, pending: Pending) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(pending);
    }

    /// The session to run, if a request upgraded.
    pub(crate) fn take(&self) -> Option<Pending> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// Handles `GET /`: a WebSocket handshake (RFC 6455, 4.2) becomes a session, a plain GET gets the
/// chat page or the port's explanation ([`crate::server::web::front`]), and a broken handshake
/// gets an HTTP error saying what is wrong.
pub async fn handle(query: Query<Params>, mut req: Request) -> Response {
    let accept = match handshake::check(req.headers()) {
        Ok(Some(accept)) => accept,
        Ok(None) => return crate::server::web::front(req.headers(), req.uri()),
        Err(e) => return e.into_response(),
    };
    let Some(handover) = req
        .extensions()
        .get::<ConnInfo>()
        .map(|c| c.handover.clone())
    else {
        return HandshakeError::NotHttp11.into_response();
    };
    if req.extensions().get::<OnUpgrade>().is_none() {
        return HandshakeError::NotHttp11.into_response();
    }
    handover.put(Pending {
        upgrade: hyper::upgrade::on(&mut req),
        username: query.0.username,
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    response
}
