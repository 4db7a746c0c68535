//! The chat page: HTML, CSS and JavaScript that speak the WebSocket protocol from a browser,
//! served on the chat port from the binary itself (no files to install, nothing fetched from
//! elsewhere, no build step).
//!
//! `GET /` is shared with the WebSocket gateway (`websocket::handle`): a handshake upgrades, a
//! request whose `Accept` names `text/html` (every browser's navigation does) gets the page, and
//! anything else (curl, scripts) gets the plain-text [`ABOUT`], which is also always at `/about`.
//! The page's assets are at fixed paths ([`ASSETS`]). Each is compressed once, when the table is
//! first used, and sent gzip-compressed to clients that accept it, with an ETag from its content
//! (answering `If-None-Match` with 304) and security headers that allow the page nothing but
//! its own script, style and WebSocket ([`negotiate`]).

mod negotiate;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use std::io::Write;
use std::sync::LazyLock;

/// What a client that is neither a WebSocket nor a browser gets on `/`, and anyone on
/// `/about`. The page's `<noscript>` says the same (a test keeps them equal).
pub const ABOUT: &str = "This is a chittyd chat port.\n\
    \n\
    It speaks gRPC (service chitty_chat.Chat, method Broadcast) and WebSocket.\n\
    WebSocket: connect to ws://HOST:PORT/ for direct messages, or ws://HOST:PORT/?username=NAME\n\
    to join the broadcast room as well. Send {\"recipient_id\": 2, \"message\": \"hello\"}; you\n\
    receive {\"sender_id\": 1, \"message\": \"hello\", ...}. Your own id arrives in a welcome frame.\n\
    In a browser, open http://HOST:PORT/ for the chat page.\n";

/// The page's files: path, content type, content. The page (`/`) is served only to requests
/// that accept HTML; the others to everyone.
pub const ASSETS: [(&str, &str, &[u8]); 4] = [
    (
        "/",
        "text/html; charset=utf-8",
        include_bytes!("index.html"),
    ),
    (
        "/chat.css",
        "text/css; charset=utf-8",
        include_bytes!("chat.css"),
    ),
    (
        "/chat.js",
        "text/javascript; charset=utf-8",
        include_bytes!("chat.js"),
    ),
    (
        "/favicon.svg",
        "image/svg+xml",
        include_bytes!("favicon.svg"),
    ),
];

/// The most the page's files may weigh together, uncompressed: the page must stay small enough
/// to load at once on a slow phone connection (a test checks the sum).
pub const MAX_TOTAL_BYTES: usize = 60 * 1024;

/// One file of the page, ready to send either way.
struct Asset {
    path: &'static str,
    content_type: HeaderValue,
    plain: Bytes,
    /// The gzip-compressed content; `None` when compressing did not make it smaller.
    gzip: Option<Bytes>,
    /// The identity representation's ETag (the content's hash, quoted).
    etag: HeaderValue,
    /// The gzip representation's ETag: a different byte sequence, so a different strong tag.
    etag_gzip: HeaderValue,
}

/// The table, built (and compressed) once, at the first request that needs it.
static TABLE: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|&(path, content_type, content)| Asset::new(path, content_type, content))
        .collect()
});

impl Asset {
    fn new(path: &'static str, content_type: &'static str, content: &'static [u8]) -> Asset {
        let hash = fnv1a(content);
        let tag = |suffix: &str| {
            HeaderValue::from_str(&format!("\"{hash:016x}{suffix}\""))
                .unwrap_or(HeaderValue::from_static("\"0\""))
        };
        let gzip = gzip(content).filter(|z| z.len() < content.len());
        Asset {
            path,
            content_type: HeaderValue::from_static(content_type),
            plain: Bytes::from_static(content),
            gzip,
            etag: tag(""),
            etag_gzip: tag(".gz"),
        }
    }

    /// The response to a GET of this asset with `headers`.
    fn respond(&self, headers: &HeaderMap) -> Response {
        let body = match &self.gzip {
            Some(z) if negotiate::accepts_gzip(headers) => Some(z),
            _ => None,
        };
        let etag = if body.is_some() {
            &self.etag_gzip
        } else {
            &self.etag
        };
        // Either tag names the current content: a client that cached one representation and
        // now asks for the other still has what it needs.
        let fresh = negotiate::none_match(headers, &[&self.etag, &self.etag_gzip]);
        let mut response = if fresh {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            r
        } else {
            let mut r = Response::new(Body::from(body.unwrap_or(&self.plain).clone()));
            r.headers_mut()
                .insert(header::CONTENT_TYPE, self.content_type.clone());
            if body.is_some() {
                r.headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            r
        };
        let h = response.headers_mut();
        h.insert(header::ETAG, etag.clone());
        // Fixed paths, so a new chittyd's page must replace a cached one: every use asks again,
        // and an unchanged file costs a 304.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        let vary = if self.path == "/" {
            "Accept, Accept-Encoding"
        } else {
            "Accept-Encoding"
        };
        h.insert(header::VARY, HeaderValue::from_static(vary));
        response
    }
}

/// `GET /` without a WebSocket handshake: the page for browsers, the text for everyone else.
pub fn front(headers: &HeaderMap, uri: &Uri) -> Response {
    if !negotiate::wants_html(headers) {
        let mut response = about_text();
        response
            .headers_mut()
            .insert(header::VARY, HeaderValue::from_static("Accept"));
        return response;
    }
    let mut response = TABLE[0].respond(headers);
    secure(&mut response, headers, uri);
    response
}

/// `GET /about`: the explanation of the port, as plain text.
pub async fn about() -> Response {
    about_text()
}

/// [`ABOUT`] as a plain-text response.
fn about_text() -> Response {
    let mut response = ABOUT.into_response();
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// `GET` of one of the page's files other than the page itself (the router sends only their
/// paths here; anything else is 404 like every unknown path).
pub async fn asset(uri: Uri, headers: HeaderMap) -> Response {
    let Some(asset) = TABLE[1..].iter().find(|a| a.path == uri.path()) else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let mut response = asset.respond(&headers);
    secure(&mut response, &headers, &uri);
    response
}

/// The paths [`asset`] serves, for the router.
pub fn asset_paths() -> impl Iterator<Item = &'static str> {
    ASSETS[1..].iter().map(|(path, _, _)| *path)
}

/// The security headers every file of the page carries.
fn secure(response: &mut Response, headers: &HeaderMap, uri: &Uri) {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        negotiate::content_security_policy(negotiate::host(headers, uri)),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

/// 64-bit FNV-1a: the ETag only has to change when the content does (it is not a defence
/// against forgery: the content is the binary's own), and this needs no dependency.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The content gzip-compressed (best compression: it is done once). `None` if the encoder
/// fails, which writing to memory does not; the file is then sent uncompressed.
fn gzip(content: &[u8]) -> Option<Bytes> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(content).ok()?;
    encoder.finish().ok().map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_stays_within_its_budget() {
        let total: usize = ASSETS.iter().map(|(_, _, c)| c.len()).sum();
        assert!(total <= MAX_TOTAL_BYTES, "{total} bytes");
    }

    #[test]
    fn noscript_says_what_the_text_says() {
        let page = std::str::from_utf8(ASSETS[0].2).unwrap();
        let noscript = page
            .split_once("<noscript>")
            .and_then(|(_, rest)| rest.split_once("</noscript>"))
            .map(|(inside, _)| inside)
            .unwrap();
        assert!(noscript.contains(ABOUT.trim_end()), "{noscript}");
    }

    /// The values of every `NAME="…"` attribute in `html`, with their names.
    fn attributes(html: &str) -> Vec<(&str, &str)> {
        let mut out = Vec::new();
        let mut rest = html;
        while let Some(at) = rest.find("=\"") {
            let name_start = rest[..at]
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .map_or(0, |i| i + 1);
            let value = &rest[at + 2..];
            let end = value.find('"').unwrap_or(value.len());
            out.push((&rest[name_start..at], &value[..end]));
            rest = &value[end..];
        }
        out
    }

    #[test]
    fn nothing_is_fetched_from_elsewhere_or_inline() {
        let page = std::str::from_utf8(ASSETS[0].2).unwrap();
        for (name, value) in attributes(page) {
            assert!(!name.starts_with("on"), "inline handler {name}");
            assert_ne!(name, "style", "inline style");
            if name == "src" || name == "href" {
                assert!(
                    value.starts_with('/') && !value.starts_with("//"),
                    "{value}"
                );
            }
        }
        assert!(!page.contains("<style"), "inline style");
        assert_eq!(page.matches("<script").count(), 1);
        assert!(page.contains("<script src=\"/chat.js\" defer></script>"));
        let css = std::str::from_utf8(ASSETS[1].2).unwrap();
        assert!(!css.contains("url(") && !css.contains("@import"));
        let js = std::str::from_utf8(ASSETS[2].2).unwrap();
        for bad in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!js.contains(bad), "chat.js uses {bad}");
        }
    }

    #[test]
    fn gzip_round_trips_and_tags_differ() {
        use std::io::Read;
        for asset in TABLE.iter() {
            if let Some(z) = &asset.gzip {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&z[..])
                    .read_to_end(&mut out)
                    .unwrap();
                assert_eq!(out, asset.plain, "{}", asset.path);
            }
            assert_ne!(asset.etag, asset.etag_gzip);
        }
        assert!(
            TABLE
                .iter()
                .all(|a| a.path != "/chat.js" || a.gzip.is_some())
        );
    }
}
