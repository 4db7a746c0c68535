//! What a request's headers ask for (HTML or not, gzip or not, a cached copy still fresh) and the
//! Content-Security-Policy that fits the host it was sent to. Header values come from the
//! network: anything unreadable counts as absent.

use http::{HeaderMap, HeaderName, HeaderValue, Uri, header};

/// Whether `Accept` names `text/html` with a non-zero quality: a browser navigating to the page.
/// `*/*` alone (curl, most libraries) is not enough, so they keep getting the text.
pub(super) fn wants_html(headers: &HeaderMap) -> bool {
    accepts(headers, header::ACCEPT, |item| {
        item.eq_ignore_ascii_case("text/html")
    })
}

/// Whether `Accept-Encoding` allows gzip (`gzip`, `x-gzip` or `*`, with a non-zero quality).
pub(super) fn accepts_gzip(headers: &HeaderMap) -> bool {
    accepts(headers, header::ACCEPT_ENCODING, |item| {
        ["gzip", "x-gzip", "*"]
            .iter()
            .any(|g| item.eq_ignore_ascii_case(g))
    })
}

/// Whether any item of the comma-separated lists in `name` matches and has a quality above 0.
fn accepts(headers: &HeaderMap, name: HeaderName, matches: impl Fn(&str) -> bool) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let token = parts.next().unwrap_or("");
            matches(token) && parts.all(|p| !is_zero_quality(p))
        })
}

/// `q=0`, `q=0.0`, … (RFC 9110, 12.4.2): "not acceptable".
fn is_zero_quality(param: &str) -> bool {
    let Some((name, value)) = param.split_once('=') else {
        return false;
    };
    name.trim().eq_ignore_ascii_case("q") && value.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
}

/// Whether `If-None-Match` names one of `tags` (or `*`), by the weak comparison RFC 9110
/// (13.1.2) prescribes for it: a `W/` prefix is ignored.
pub(super) fn none_match(headers: &HeaderMap, tags: &[&HeaderValue]) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| {
            let t = t.strip_prefix("W/").unwrap_or(t);
            t == "*" || tags.iter().any(|tag| tag.as_bytes() == t.as_bytes())
        })
}

/// The host the request was sent to (`Host`, or HTTP/2's `:authority`), if it is a plain
/// `name[:port]` or `[v6]:port`: it goes into a header, so nothing else is let through.
pub(super) fn host<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> Option<&'a str> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))?;
    let plain = |c: char| c.is_ascii_alphanumeric() || ".-:[]".contains(c);
    (!host.is_empty() && host.len() <= 255 && host.chars().all(plain)).then_some(host)
}

/// The page may run its own script and style, show its own icon, and open a WebSocket to the
/// host it came from; nothing inline, nothing from elsewhere, no framing. CSP level 3 lets
/// `'self'` cover `ws:`/`wss:` on the same host; the host's own `ws://` and `wss://` are named as
/// well for browsers that predate it.
pub(super) fn content_security_policy(host: Option<&str>) -> HeaderValue {
    let connect = match host {
        Some(h) => format!("'self' ws://{h} wss://{h}"),
        None => "'self'".to_owned(),
    };
    let policy = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src {connect}; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    );
    HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_static(value));
        }
        h
    }

    #[test]
    fn html_only_when_named() {
        let chromium = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,\
                        image/webp,*/*;q=0.8";
        assert!(wants_html(&headers(&[("accept", chromium)])));
        assert!(wants_html(&headers(&[("accept", "TEXT/HTML")])));
        assert!(!wants_html(&headers(&[("accept", "*/*")])));
        assert!(!wants_html(&headers(&[])));
        assert!(!wants_html(&headers(&[("accept", "text/html;q=0")])));
        assert!(!wants_html(&headers(&[(
            "accept",
            "text/plain, text/htmlx"
        )])));
    }

    #[test]
    fn gzip_unless_refused() {
        assert!(accepts_gzip(&headers(&[(
            "accept-encoding",
            "gzip, deflate, br, zstd"
        )])));
        assert!(accepts_gzip(&headers(&[("accept-encoding", "*")])));
        assert!(!accepts_gzip(&headers(&[(
            "accept-encoding",
            "gzip;q=0.000"
        )])));
        assert!(!accepts_gzip(&headers(&[("accept-encoding", "br")])));
        assert!(!accepts_gzip(&headers(&[])));
    }

    #[test]
    fn if_none_match_compares_weakly() {
        let tag = HeaderValue::from_static("\"abc\"");
        let check = |v| none_match(&headers(&[("if-none-match", v)]), &[&tag]);
        assert!(check("\"abc\""));
        assert!(check("W/\"abc\""));
        assert!(check("\"x\", \"abc\""));
        assert!(check("*"));
        assert!(!check("\"abcd\""));
        assert!(!none_match(&headers(&[]), &[&tag]));
    }

    #[test]
    fn only_plain_hosts_reach_the_policy() {
        let uri = Uri::from_static("/");
        let host_of = |v: &'static str| {
            let h = headers(&[("host", v)]);
            host(&h, &uri).map(str::to_owned)
        };
        assert_eq!(host_of("localhost:8080").as_deref(), Some("localhost:8080"));
        assert_eq!(host_of("[::1]:8080").as_deref(), Some("[::1]:8080"));
        assert_eq!(host_of("x; script-src *"), None);
        let csp = content_security_policy(Some("h:1"));
        let csp = csp.to_str().unwrap();
        assert!(
            csp.contains("connect-src 'self' ws://h:1 wss://h:1;"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe"), "{csp}");
    }
}
