//! The WebSocket opening handshake (RFC 6455, 4.2): what makes a request one, and the HTTP
//! error that says what is wrong with a broken one.

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};

/// Why a WebSocket handshake is refused.
#[derive(Debug, thiserror::Error)]
pub(super) enum HandshakeError {
    #[error("a WebSocket handshake needs \"Connection: Upgrade\"")]
    NoConnectionUpgrade,
    #[error("chittyd speaks WebSocket version 13 (Sec-WebSocket-Version: 13)")]
    Version,
    #[error("a WebSocket handshake needs a Sec-WebSocket-Key")]
    NoKey,
    #[error("WebSocket connections need HTTP/1.1")]
    NotHttp11,
}

impl IntoResponse for HandshakeError {
    fn into_response(self) -> Response {
        let status = match self {
            HandshakeError::Version => StatusCode::UPGRADE_REQUIRED,
            _ => StatusCode::BAD_REQUEST,
        };
        let mut response = (status, format!("{self}\n")).into_response();
        if let HandshakeError::Version = self {
            response.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
        }
        response
    }
}

/// Checks a WebSocket handshake: `Ok(None)` if the request is not one at all, the accept key
/// for the response if it is a good one.
pub(super) fn check(headers: &HeaderMap) -> Result<Option<HeaderValue>, HandshakeError> {
    if !has_token(headers, header::UPGRADE, "websocket") {
        return Ok(None);
    }
    if !has_token(headers, header::CONNECTION, "upgrade") {
        return Err(HandshakeError::NoConnectionUpgrade);
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err(HandshakeError::Version);
    }
    let Some(key) = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|k| !k.is_empty())
    else {
        return Err(HandshakeError::NoKey);
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    // Base64 is always a valid header value.
    Ok(HeaderValue::from_str(&accept).ok())
}

/// Whether a comma-separated header has `token` (case-insensitively) in any of its values.
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}
