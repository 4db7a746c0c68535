//! The page's HTTP: the page for browsers and the text for everyone else on `/`, gzip, ETags and
//! 304, the security headers, and the size budget, through hyper's HTTP/1.1 client.

use bytes::Bytes;
use chitty::server::web::{ABOUT, ASSETS, MAX_TOTAL_BYTES};
use chitty_testkit::{PATIENCE, start_default};
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use std::io::Read;
use std::net::SocketAddr;
use tokio::net::TcpStream;

/// What Chromium sends when it navigates to a page.
const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,\
                              image/avif,image/webp,image/apng,*/*;q=0.8";

struct Got {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Got {
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(&name)
            .map_or("", |v| v.to_str().unwrap_or("(not text)"))
    }
}

/// GET `path` with `headers`, on a connection of its own.
async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Got {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::get(path).header(header::HOST, addr.to_string());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let response = tokio::time::timeout(
        PATIENCE,
        sender.send_request(req.body(Empty::<Bytes>::new()).unwrap()),
    )
    .await
    .expect("no response")
    .unwrap();
    let (parts, body) = response.into_parts();
    Got {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[tokio::test]
async fn browsers_get_the_page_and_everyone_else_the_text() {
    let server = start_default().await;
    let page = get(server.addr, "/", &[("accept", BROWSER_ACCEPT)]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        page.header(header::CONTENT_TYPE),
        "text/html; charset=utf-8"
    );
    assert_eq!(page.header(header::VARY), "Accept, Accept-Encoding");
    let html = String::from_utf8(page.body.to_vec()).unwrap();
    assert!(html.contains("<title>Chitty-Chat</title>"), "{html}");
    // curl's Accept, none at all, and /about whatever is asked: the text.
    for (path, accept) in [
        ("/", Some("*/*")),
        ("/", None),
        ("/about", Some(BROWSER_ACCEPT)),
    ] {
        let headers: Vec<_> = accept.map(|a| ("accept", a)).into_iter().collect();
        let text = get(server.addr, path, &headers).await;
        assert_eq!(text.status, StatusCode::OK, "{path} {accept:?}");
        assert_eq!(
            text.header(header::CONTENT_TYPE),
            "text/plain; charset=utf-8"
        );
        assert_eq!(text.body, ABOUT.as_bytes(), "{path} {accept:?}");
    }
    // A WebSocket handshake on / still upgrades, even from a browser.
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let head = chitty_testkit::http::upgrade(&mut s, "/").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    drop(s);
    for path in ["/nope", "/chat.js/x", "/index.html", "/chat.js.gz"] {
        let got = get(server.addr, path, &[("accept", BROWSER_ACCEPT)]).await;
        assert_eq!(got.status, StatusCode::NOT_FOUND, "{path}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn files_are_gzipped_tagged_and_revalidated() {
    let server = start_default().await;
    let html = [("accept", BROWSER_ACCEPT)];
    for (path, content_type, content) in ASSETS {
        let plain = get(server.addr, path, &html).await;
        assert_eq!(plain.status, StatusCode::OK, "{path}");
        assert_eq!(plain.header(header::CONTENT_TYPE), content_type);
        assert_eq!(plain.header(header::CONTENT_ENCODING), "", "{path}");
        assert_eq!(plain.body, content, "{path}");
        assert_eq!(plain.header(header::CACHE_CONTROL), "no-cache");
        let etag = plain.header(header::ETAG).to_owned();
        assert!(etag.starts_with('"') && etag.len() > 10, "{path}: {etag:?}");

        let zipped = get(
            server.addr,
            path,
            &[
                ("accept", BROWSER_ACCEPT),
                ("accept-encoding", "gzip, deflate, br"),
            ],
        )
        .await;
        assert_eq!(zipped.status, StatusCode::OK);
        if zipped.header(header::CONTENT_ENCODING) == "gzip" {
            assert!(zipped.body.len() < content.len(), "{path}");
            assert_eq!(gunzip(&zipped.body), content, "{path}");
            assert_ne!(zipped.header(header::ETAG), etag);
        } else {
            // Only a file too small for gzip to help goes out as it is.
            assert!(content.len() < 300, "{path} not compressed");
        }
        let zipped_tag = zipped.header(header::ETAG).to_owned();

        for tag in [
            etag.as_str(),
            zipped_tag.as_str(),
            &format!("W/{etag}"),
            "\"x\", *",
        ] {
            let again = get(
                server.addr,
                path,
                &[("accept", BROWSER_ACCEPT), ("if-none-match", tag)],
            )
            .await;
            assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{path} {tag}");
            assert!(again.body.is_empty());
            assert_eq!(again.header(header::ETAG), etag);
        }
        let other = get(
            server.addr,
            path,
            &[("accept", BROWSER_ACCEPT), ("if-none-match", "\"0\"")],
        )
        .await;
        assert_eq!(other.status, StatusCode::OK, "{path}");
    }
    // The files that matter most are compressed.
    for path in ["/", "/chat.js", "/chat.css"] {
        let got = get(
            server.addr,
            path,
            &[("accept", BROWSER_ACCEPT), ("accept-encoding", "gzip")],
        )
        .await;
        assert_eq!(got.header(header::CONTENT_ENCODING), "gzip", "{path}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn the_page_allows_only_itself_and_its_websocket() {
    let server = start_default().await;
    let host = server.addr.to_string();
    for (path, _, _) in ASSETS {
        let got = get(server.addr, path, &[("accept", BROWSER_ACCEPT)]).await;
        let csp = got.header(header::CONTENT_SECURITY_POLICY);
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            &format!("connect-src 'self' ws://{host} wss://{host}"),
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {directive} not in {csp}");
        }
        assert_eq!(got.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert_eq!(got.header(header::REFERRER_POLICY), "no-referrer");
        assert!(
            got.header(header::CONTENT_TYPE).contains("charset=utf-8")
                || got.header(header::CONTENT_TYPE) == "image/svg+xml",
            "{path}"
        );
    }
    // The policy names the host the page was asked from, which its WebSocket goes to.
    let got = get(server.addr, "/", &[("accept", BROWSER_ACCEPT)]).await;
    assert!(got.header(header::CONTENT_SECURITY_POLICY).contains(&host));
    let text = get(server.addr, "/about", &[]).await;
    assert_eq!(text.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    server.shutdown().await;
}

#[tokio::test]
async fn the_page_and_everything_it_loads_weigh_at_most_60_kb() {
    let server = start_default().await;
    let page = get(server.addr, "/", &[("accept", BROWSER_ACCEPT)]).await;
    let html = String::from_utf8(page.body.to_vec()).unwrap();
    // Every file the page names, fetched as the browser would; none from elsewhere.
    let mut total = page.body.len();
    let mut loaded = vec!["/".to_owned()];
    for attr in ["src=\"", "href=\""] {
        for piece in html.split(attr).skip(1) {
            let path = &piece[..piece.find('"').unwrap()];
            assert!(path.starts_with('/') && !path.starts_with("//"), "{path}");
            let got = get(server.addr, path, &[("accept", "*/*")]).await;
            assert_eq!(got.status, StatusCode::OK, "{path}");
            total += got.body.len();
            loaded.push(path.to_owned());
        }
    }
    loaded.sort();
    let mut served: Vec<_> = ASSETS.iter().map(|(p, _, _)| p.to_string()).collect();
    served.sort();
    assert_eq!(loaded, served, "the page loads exactly the files served");
    assert!(total <= MAX_TOTAL_BYTES, "{total} bytes");
    server.shutdown().await;
}
