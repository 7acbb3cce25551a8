//! SIP messages: parse, inspect, build and serialise (RFC 3261 §7, §20, §25).
//!
//! The grammar of RFC 3261 §25 is implemented here, URIs included (rsip
//! 0.4, used before, tokenised only the methods it knew, did not expand
//! compact forms or unfold lines, and refused every IPv6 reference, so no
//! IPv6 phone could register). Everything else in the workspace sees only
//! the types of this module.
//!
//! Implemented: request and status lines, header folding (§7.3.1), compact
//! forms (§7.3.3), Content-Length on datagrams (§18.3: extra bytes dropped,
//! a short body is an error), the mandatory request headers (§8.1.1), a
//! per-message size limit. Not implemented: multipart bodies, S/MIME,
//! header-embedded URI headers.

use std::fmt::{self, Write as _};

use bytes::Bytes;

/// Default largest message accepted (bytes); larger datagrams are dropped.
pub const DEFAULT_MAX_MESSAGE: usize = 65_535;

/// The RFC 3261 branch magic cookie (§8.1.1.7).
pub const BRANCH_COOKIE: &str = "z9hG4bK";

/// Why a message could not be parsed. Each error knows the answer it earns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The message is larger than the configured limit.
    #[error("message of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Size of the message.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The start line is neither a request line nor a status line.
    #[error("malformed start line")]
    StartLine,
    /// The SIP version is not SIP/2.0.
    #[error("unsupported SIP version")]
    Version,
    /// The Request-URI does not parse.
    #[error("malformed Request-URI")]
    RequestUri,
    /// A header line has no colon or an invalid name.
    #[error("malformed header line {line}")]
    HeaderLine {
        /// 1-based line number within the message.
        line: usize,
    },
    /// The header section does not end with an empty line.
    #[error("header section not terminated")]
    Unterminated,
    /// A mandatory header is missing.
    #[error("missing {0} header")]
    Missing(&'static str),
    /// A header value does not follow its grammar.
    #[error("malformed {0} header")]
    Malformed(&'static str),
    /// The CSeq method does not match the request method.
    #[error("CSeq method does not match the request method")]
    CSeqMethod,
    /// Content-Length says more bytes than the datagram carries.
    #[error("body shorter than Content-Length")]
    ShortBody,
    /// A header that allows one value carries several (RFC 4475 §3.4.8, §3.4.9).
    #[error("several values in single-valued header {0}")]
    Repeated(&'static str),
    /// The Request-URI is well formed but of a scheme this node does not
    /// serve (RFC 3261 §8.2.2.1; RFC 4475 §3.4.2, §3.4.3).
    #[error("unsupported URI scheme {0}")]
    Scheme(String),
}

impl ParseError {
    /// The status code a request with this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            ParseError::TooLarge { .. } => 513,
            ParseError::Version => 505,
            ParseError::Scheme(_) => 416,
            // A malformed Request-URI is a bad request; 416 is for a
            // well-formed URI of a scheme we do not serve (RFC 4475 ltgtruri).
            _ => 400,
        }
    }
}

/// A SIP method. Extension methods are kept as written (RFC 3261 §7.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Method {
    Ack,
    Bye,
    Cancel,
    Info,
    Invite,
    Message,
    Notify,
    Options,
    Prack,
    Publish,
    Refer,
    Register,
    Subscribe,
    Update,
    Other(String),
}

impl Method {
    fn parse(s: &str) -> Method {
        match s {
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "INFO" => Method::Info,
            "INVITE" => Method::Invite,
            "MESSAGE" => Method::Message,
            "NOTIFY" => Method::Notify,
            "OPTIONS" => Method::Options,
            "PRACK" => Method::Prack,
            "PUBLISH" => Method::Publish,
            "REFER" => Method::Refer,
            "REGISTER" => Method::Register,
            "SUBSCRIBE" => Method::Subscribe,
            "UPDATE" => Method::Update,
            other => Method::Other(other.to_owned()),
        }
    }

    /// The method as written on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Info => "INFO",
            Method::Invite => "INVITE",
            Method::Message => "MESSAGE",
            Method::Notify => "NOTIFY",
            Method::Options => "OPTIONS",
            Method::Prack => "PRACK",
            Method::Publish => "PUBLISH",
            Method::Refer => "REFER",
            Method::Register => "REGISTER",
            Method::Subscribe => "SUBSCRIBE",
            Method::Update => "UPDATE",
            Method::Other(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A SIP or SIPS URI (RFC 3261 §19.1), or another absolute URI kept opaque.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    /// `sip`, `sips`, or another scheme in lower case.
    pub scheme: String,
    /// The user part, if any.
    pub user: Option<String>,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port, if written.
    pub port: Option<u16>,
    /// URI parameters as written (`;name=value` or `;name`).
    pub params: Vec<(String, Option<String>)>,
    /// URI headers as written after `?` (never allowed in a Request-URI).
    pub headers: Option<String>,
}

impl Uri {
    /// Parse a URI: SIP and SIPS URIs by the RFC 3261 §25.1 grammar, other
    /// schemes kept opaque.
    pub fn parse(s: &str) -> Result<Uri, ParseError> {
        let s = s.trim();
        let scheme_end = s.find(':').ok_or(ParseError::RequestUri)?;
        let scheme = s[..scheme_end].to_ascii_lowercase();
        if scheme.is_empty()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        {
            return Err(ParseError::RequestUri);
        }
        if scheme != "sip" && scheme != "sips" {
            // tel:, mailto:, urn: ... are valid Request-URIs we do not route.
            return Ok(Uri {
                scheme,
                user: Some(s[scheme_end + 1..].to_owned()),
                host: String::new(),
                port: None,
                params: Vec::new(),
                headers: None,
            });
        }
        parse_sip_uri(scheme, &s[scheme_end + 1..]).ok_or(ParseError::RequestUri)
    }

    /// A `sip:` URI with the given parts.
    pub fn sip(user: Option<&str>, host: &str, port: Option<u16>) -> Uri {
        Uri {
            scheme: "sip".into(),
            user: user.map(str::to_owned),
            host: host.to_owned(),
            port,
            params: Vec::new(),
            headers: None,
        }
    }

    /// Value of a URI parameter (`Some(None)` for a flag such as `;lr`).
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// The `transport` parameter, lower-cased, if any.
    pub fn transport(&self) -> Option<String> {
        self.param("transport")
            .flatten()
            .map(str::to_ascii_lowercase)
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.scheme != "sip" && self.scheme != "sips" {
            return write!(f, "{}:{}", self.scheme, self.user.as_deref().unwrap_or(""));
        }
        write!(f, "{}:", self.scheme)?;
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        for (n, v) in &self.params {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        if let Some(h) = &self.headers {
            write!(f, "?{h}")?;
        }
        Ok(())
    }
}

/// `;a=b;c` parameters after the first `;` of `s` (outside `<>` and quotes).
fn split_params(s: &str) -> Vec<(String, Option<String>)> {
    let Some(start) = s.find(';') else {
        return Vec::new();
    };
    s[start + 1..]
        .split(';')
        .filter(|p| !p.trim().is_empty())
        .map(|p| match p.split_once('=') {
            Some((n, v)) => (n.trim().to_owned(), Some(v.trim().to_owned())),
            None => (p.trim().to_owned(), None),
        })
        .collect()
}

/// The part of a SIP or SIPS URI after `scheme:` (RFC 3261 §25.1):
/// `[user[:password]@]host[:port][;params][?headers]`, the host a name, an
/// IPv4 address or a bracketed IPv6 reference (RFC 5118).
fn parse_sip_uri(scheme: String, rest: &str) -> Option<Uri> {
    // '@' is not allowed unescaped in a user, password, host, parameter or
    // header, so the first one ends the userinfo.
    let (user, hostpart) = match rest.find('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            if user.is_empty() || !userinfo.bytes().all(is_user_byte) || !escapes_ok(userinfo) {
                return None;
            }
            (Some(user.to_owned()), &rest[at + 1..])
        }
        None => (None, rest),
    };
    let (hostport, after) = match hostpart.find([';', '?']) {
        Some(i) => (&hostpart[..i], &hostpart[i..]),
        None => (hostpart, ""),
    };
    let (host, port) = parse_hostport(hostport)?;
    let (params_text, headers) = match after.find('?') {
        Some(i) => (&after[..i], Some(&after[i + 1..])),
        None => (after, None),
    };
    let params = split_params(params_text);
    if params.iter().any(|(n, v)| {
        n.is_empty()
            || !n.bytes().all(is_param_byte)
            || v.as_deref()
                .is_some_and(|v| v.is_empty() || !v.bytes().all(is_param_byte))
    }) || !escapes_ok(params_text)
    {
        return None;
    }
    if let Some(h) = headers
        && (h.is_empty() || !h.bytes().all(|b| is_param_byte(b) || b"=&?".contains(&b)))
    {
        return None;
    }
    Some(Uri {
        scheme,
        user,
        host,
        port,
        params,
        headers: headers.map(str::to_owned),
    })
}

/// `host[:port]` with the host a name, an IPv4 address or `[IPv6]`; the
/// host is returned without brackets.
fn parse_hostport(s: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']')?;
        let ip: std::net::Ipv6Addr = rest[..end].parse().ok()?;
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return None,
        };
        (ip.to_string(), port)
    } else {
        let (h, p) = match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        // Underscores are not in the grammar but are common in the field
        // (container and cloud host names): taken, as Via sent-by takes them.
        let name_ok = !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
            && !h.starts_with(['-', '.'])
            && !h.contains("..");
        if !name_ok {
            return None;
        }
        (h.to_owned(), p)
    };
    let port = match port {
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
        None => None,
    };
    Some((host, port))
}

/// unreserved / escaped / user-unreserved, and ':' between user and password.
fn is_user_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()%&=+$,;?/:".contains(&b)
}

/// paramchar: param-unreserved / unreserved / escaped.
fn is_param_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()%[]/:&+$".contains(&b)
}

/// Every `%` is followed by two hex digits.
fn escapes_ok(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter().enumerate().all(|(i, c)| {
        *c != b'%'
            || (b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    })
}

/// A name-addr or addr-spec with header parameters: From, To, Contact,
/// Route and Record-Route values (RFC 3261 §20.10, §25.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name as written (quotes kept), if any.
    pub display: Option<String>,
    /// The URI.
    pub uri: Uri,
    /// Header parameters (after the `>` or, for addr-spec, after the URI).
    pub params: Vec<(String, Option<String>)>,
}

impl NameAddr {
    /// Parse one name-addr / addr-spec with its parameters.
    pub fn parse(s: &str, header: &'static str) -> Result<NameAddr, ParseError> {
        let s = s.trim();
        if let Some(lt) = find_unquoted(s, '<') {
            let gt = s[lt..].find('>').ok_or(ParseError::Malformed(header))? + lt;
            let display = s[..lt].trim();
            let inside = &s[lt + 1..gt];
            if inside.trim() != inside {
                // RFC 4475 §3.1.2.14: no whitespace inside the brackets.
                return Err(ParseError::Malformed(header));
            }
            let uri = Uri::parse(inside).map_err(|_| ParseError::Malformed(header))?;
            Ok(NameAddr {
                display: (!display.is_empty()).then(|| display.to_owned()),
                uri,
                params: split_params(&s[gt + 1..]),
            })
        } else {
            // addr-spec form: parameters after the URI belong to the header.
            let (uri_part, params) = match s.find(';') {
                Some(i) => (&s[..i], split_params(&s[i..])),
                None => (s, Vec::new()),
            };
            if uri_part.trim().contains(['?', ',', ' ']) {
                // §20.10: a URI with headers, commas or spaces must be in <>.
                return Err(ParseError::Malformed(header));
            }
            let uri = Uri::parse(uri_part).map_err(|_| ParseError::Malformed(header))?;
            Ok(NameAddr {
                display: None,
                uri,
                params,
            })
        }
    }

    /// Value of a header parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_deref())
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&str> {
        self.param("tag")
    }

    /// Set (or replace) a header parameter.
    pub fn set_param(&mut self, name: &str, value: Option<&str>) {
        self.params.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.params
            .push((name.to_owned(), value.map(str::to_owned)));
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            write!(f, "{d} ")?;
        }
        write!(f, "<{}>", self.uri)?;
        for (n, v) in &self.params {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        Ok(())
    }
}

fn find_unquoted(s: &str, c: char) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, ch) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match ch {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            _ if ch == c && !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// Split a header value on commas that are outside quotes and `<>`.
pub fn split_list(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut quoted, mut angle, mut escaped, mut start) = (false, false, false, 0);
    for (i, ch) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match ch {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(s[start..].trim());
    out.retain(|v| !v.is_empty());
    out
}

/// One Via value (RFC 3261 §20.42).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Transport in upper case (`UDP`, `TCP`, ...).
    pub transport: String,
    /// sent-by host (IPv6 without brackets).
    pub host: String,
    /// sent-by port, if written.
    pub port: Option<u16>,
    /// Parameters (branch, received, rport, ...).
    pub params: Vec<(String, Option<String>)>,
}

impl Via {
    /// Parse one Via value. Whitespace is allowed around the slashes of
    /// the sent-protocol and around `;` and `=` (RFC 3261 §25.1 SWS, LWS).
    pub fn parse(s: &str) -> Result<Via, ParseError> {
        let bad = || ParseError::Malformed("Via");
        let mut proto = s.trim().splitn(3, '/');
        let (name, version) = (proto.next().map(str::trim), proto.next().map(str::trim));
        if !name.is_some_and(|n| n.eq_ignore_ascii_case("SIP")) || version != Some("2.0") {
            return Err(bad());
        }
        let rest = proto.next().ok_or_else(bad)?.trim_start();
        let (transport, rest) = rest
            .split_once(|c: char| c.is_ascii_whitespace())
            .ok_or_else(bad)?;
        if !is_token(transport) {
            return Err(bad());
        }
        let transport = transport.to_ascii_uppercase();
        let rest = rest.trim();
        let (sent_by, params) = match rest.find(';') {
            Some(i) => (rest[..i].trim(), split_params(&rest[i..])),
            None => (rest, Vec::new()),
        };
        let (host, port) = split_host_port(sent_by).ok_or_else(bad)?;
        Ok(Via {
            transport,
            host,
            port,
            params,
        })
    }

    /// Value of a parameter (`Some(None)` for a flag such as `;rport`).
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// The branch parameter.
    pub fn branch(&self) -> Option<&str> {
        self.param("branch").flatten()
    }

    /// sent-by as `host:port` (port defaulting to 5060), used in transaction keys.
    pub fn sent_by(&self) -> String {
        format!("{}:{}", self.host, self.port.unwrap_or(5060))
    }

    /// Set (or replace) a parameter.
    pub fn set_param(&mut self, name: &str, value: Option<&str>) {
        if let Some(slot) = self
            .params
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            slot.1 = value.map(str::to_owned);
        } else {
            self.params
                .push((name.to_owned(), value.map(str::to_owned)));
        }
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} ", self.transport)?;
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        for (n, v) in &self.params {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        Ok(())
    }
}

fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = rest[..end].to_owned();
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.trim().parse().ok()?),
            None if after.trim().is_empty() => None,
            None => return None,
        };
        return Some((host, port));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p.trim().parse().ok()?)),
        None => (s, None),
    };
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
    valid.then(|| (host.to_owned(), port))
}

/// The CSeq header value (RFC 3261 §20.16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// Sequence number (32 bits, §8.1.1.5).
    pub seq: u32,
    /// Method.
    pub method: Method,
}

impl CSeq {
    fn parse(s: &str) -> Result<CSeq, ParseError> {
        let mut it = s.split_ascii_whitespace();
        let seq = it
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or(ParseError::Malformed("CSeq"))?;
        let method = it.next().ok_or(ParseError::Malformed("CSeq"))?;
        if it.next().is_some() || !is_token(method) {
            return Err(ParseError::Malformed("CSeq"));
        }
        Ok(CSeq {
            seq,
            method: Method::parse(method),
        })
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

/// Header names in their canonical spelling, compact forms expanded (§7.3.3).
fn canonical_name(name: &str) -> Option<&'static str> {
    const KNOWN: &[&str] = &[
        "Accept",
        "Allow",
        "Authorization",
        "Call-ID",
        "Contact",
        "Content-Length",
        "Content-Type",
        "CSeq",
        "Expires",
        "From",
        "Max-Forwards",
        "Min-Expires",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Reason",
        "Record-Route",
        "Require",
        "Route",
        "Server",
        "Supported",
        "To",
        "Unsupported",
        "User-Agent",
        "Via",
        "Warning",
        "WWW-Authenticate",
    ];
    if name.len() == 1 {
        return Some(match name.as_bytes()[0].to_ascii_lowercase() {
            b'i' => "Call-ID",
            b'm' => "Contact",
            b'l' => "Content-Length",
            b'c' => "Content-Type",
            b'f' => "From",
            b's' => "Subject",
            b'k' => "Supported",
            b't' => "To",
            b'v' => "Via",
            b'e' => "Content-Encoding",
            _ => return None,
        });
    }
    KNOWN.iter().find(|k| k.eq_ignore_ascii_case(name)).copied()
}

/// Ordered header list; names are stored in canonical spelling when known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// The first value of a header.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, comma-separated lists split, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| {
                // Authorization-style headers carry commas inside one value.
                if name.ends_with("uthenticate") || name.ends_with("uthorization") {
                    vec![v.as_str()]
                } else {
                    split_list(v)
                }
            })
    }

    /// Append a header.
    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        let name = canonical_name(name).map_or_else(|| name.to_owned(), str::to_owned);
        self.0.push((name, value.into()));
    }

    /// Insert a header before all others (used for Via).
    pub fn push_front(&mut self, name: &str, value: impl Into<String>) {
        self.0.insert(0, (name.to_owned(), value.into()));
    }

    /// Replace every value of a header by one value.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        if let Some(i) = self
            .0
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            self.0[i].1 = value;
            let mut seen = false;
            self.0.retain(|(n, _)| {
                if n.eq_ignore_ascii_case(name) {
                    let keep = !seen;
                    seen = true;
                    keep
                } else {
                    true
                }
            });
        } else {
            self.push(name, value);
        }
    }

    /// Remove every value of a header.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// Remove the first value of a header (the top Via), splitting lists.
    pub fn remove_first(&mut self, name: &str) {
        if let Some(i) = self
            .0
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            let values = split_list(&self.0[i].1);
            if values.len() > 1 {
                self.0[i].1 = values[1..].join(", ");
            } else {
                self.0.remove(i);
            }
        }
    }

    /// All (name, value) pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

/// A SIP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Method.
    pub method: Method,
    /// Request-URI.
    pub uri: Uri,
    /// Headers in order.
    pub headers: Headers,
    /// Body bytes (Content-Length is computed when serialised).
    pub body: Bytes,
}

/// A SIP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Headers in order.
    pub headers: Headers,
    /// Body bytes.
    pub body: Bytes,
}

/// Either kind of message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

/// Accessors shared by requests and responses.
pub trait HasHeaders {
    /// The header list.
    fn headers(&self) -> &Headers;
    /// The header list, mutable.
    fn headers_mut(&mut self) -> &mut Headers;

    /// Call-ID value.
    fn call_id(&self) -> &str {
        self.headers().get("Call-ID").unwrap_or("")
    }
    /// Parsed CSeq (validated at parse time for received messages).
    fn cseq(&self) -> Option<CSeq> {
        self.headers().get("CSeq").and_then(|v| CSeq::parse(v).ok())
    }
    /// Parsed top Via.
    fn top_via(&self) -> Option<Via> {
        self.headers()
            .get_all("Via")
            .next()
            .and_then(|v| Via::parse(v).ok())
    }
    /// Parsed From.
    #[allow(
        clippy::wrong_self_convention,
        reason = "From is the SIP header's name"
    )]
    fn from_hdr(&self) -> Option<NameAddr> {
        self.headers()
            .get("From")
            .and_then(|v| NameAddr::parse(v, "From").ok())
    }
    /// Parsed To.
    fn to_hdr(&self) -> Option<NameAddr> {
        self.headers()
            .get("To")
            .and_then(|v| NameAddr::parse(v, "To").ok())
    }
    /// Tag of the From header.
    #[allow(
        clippy::wrong_self_convention,
        reason = "From is the SIP header's name"
    )]
    fn from_tag(&self) -> Option<String> {
        self.from_hdr().and_then(|a| a.tag().map(str::to_owned))
    }
    /// Tag of the To header.
    fn to_tag(&self) -> Option<String> {
        self.to_hdr().and_then(|a| a.tag().map(str::to_owned))
    }
    /// Every Contact value parsed; a `*` contact is reported by `is_star_contact`.
    fn contacts(&self) -> Vec<NameAddr> {
        self.headers()
            .get_all("Contact")
            .filter(|v| v.trim() != "*")
            .filter_map(|v| NameAddr::parse(v, "Contact").ok())
            .collect()
    }
    /// Whether the message carries `Contact: *`.
    fn is_star_contact(&self) -> bool {
        self.headers().get_all("Contact").any(|v| v.trim() == "*")
    }
    /// Record-Route values in order.
    fn record_routes(&self) -> Vec<NameAddr> {
        self.headers()
            .get_all("Record-Route")
            .filter_map(|v| NameAddr::parse(v, "Record-Route").ok())
            .collect()
    }
}

impl HasHeaders for Request {
    fn headers(&self) -> &Headers {
        &self.headers
    }
    fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }
}

impl HasHeaders for Response {
    fn headers(&self) -> &Headers {
        &self.headers
    }
    fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }
}

impl HasHeaders for Message {
    fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }
    fn headers_mut(&mut self) -> &mut Headers {
        match self {
            Message::Request(r) => &mut r.headers,
            Message::Response(r) => &mut r.headers,
        }
    }
}

/// The reason phrase RFC 3261 §21 gives a status code.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => match status / 100 {
            1 => "Progress",
            2 => "OK",
            3 => "Redirect",
            4 => "Client Error",
            5 => "Server Error",
            _ => "Global Failure",
        },
    }
}

/// Parse one message from a datagram or a framed stream chunk.
///
/// `limit` is the largest message accepted. A request's mandatory headers are
/// checked (§8.1.1); responses need Via, CSeq, Call-ID, From and To.
pub fn parse(bytes: &[u8], limit: usize) -> Result<Message, ParseError> {
    if bytes.len() > limit {
        return Err(ParseError::TooLarge {
            size: bytes.len(),
            limit,
        });
    }
    let head_end = find(bytes, b"\r\n\r\n").ok_or(ParseError::Unterminated)?;
    let head = std::str::from_utf8(&bytes[..head_end]).map_err(|_| ParseError::StartLine)?;
    let body = &bytes[head_end + 4..];
    let (start, header_block) = head.split_once("\r\n").unwrap_or((head, ""));

    let mut headers = Headers::default();
    let mut current: Option<(String, String)> = None;
    for (i, line) in header_block.split("\r\n").enumerate() {
        if line.starts_with([' ', '\t']) {
            // §7.3.1: a continuation line belongs to the previous header.
            let (_, value) = current
                .as_mut()
                .ok_or(ParseError::HeaderLine { line: i + 2 })?;
            value.push(' ');
            value.push_str(line.trim());
            continue;
        }
        if let Some((n, v)) = current.take() {
            headers.push(&n, v);
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(ParseError::HeaderLine { line: i + 2 })?;
        let name = name.trim_end();
        if !is_token(name) {
            return Err(ParseError::HeaderLine { line: i + 2 });
        }
        current = Some((name.to_owned(), value.trim().to_owned()));
    }
    if let Some((n, v)) = current.take() {
        headers.push(&n, v);
    }

    let body = match headers.get("Content-Length") {
        Some(v) => {
            let len: usize = v
                .trim()
                .parse()
                .map_err(|_| ParseError::Malformed("Content-Length"))?;
            if len > body.len() {
                return Err(ParseError::ShortBody);
            }
            &body[..len]
        }
        None => body,
    };
    let body = Bytes::copy_from_slice(body);

    if let Some(rest) = start.strip_prefix("SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let mut parts = rest.splitn(3, ' ');
        if parts.next() != Some("2.0") {
            return Err(ParseError::Version);
        }
        let status: u16 = parts
            .next()
            .filter(|s| s.len() == 3)
            .and_then(|s| s.parse().ok())
            .filter(|s| (100..700).contains(s))
            .ok_or(ParseError::StartLine)?;
        let reason = parts.next().unwrap_or("").to_owned();
        let response = Response {
            status,
            reason,
            headers,
            body,
        };
        check_common(&response)?;
        return Ok(Message::Response(response));
    }

    // Request-Line = Method SP Request-URI SP SIP-Version
    let mut parts = start.split(' ');
    let (method, uri, version) = (parts.next(), parts.next(), parts.next());
    if parts.next().is_some() {
        return Err(ParseError::StartLine);
    }
    let (Some(method), Some(uri), Some(version)) = (method, uri, version) else {
        return Err(ParseError::StartLine);
    };
    if !is_token(method) {
        return Err(ParseError::StartLine);
    }
    if version != "SIP/2.0" {
        return Err(if version.starts_with("SIP/") {
            ParseError::Version
        } else {
            ParseError::StartLine
        });
    }
    let uri = Uri::parse(uri)?;
    if uri.scheme != "sip" && uri.scheme != "sips" {
        return Err(ParseError::Scheme(uri.scheme));
    }
    if uri.headers.is_some() {
        // §19.1.5: header fields are not allowed in a Request-URI (RFC 4475 escruri).
        return Err(ParseError::RequestUri);
    }
    let request = Request {
        method: Method::parse(method),
        uri,
        headers,
        body,
    };
    check_common(&request)?;
    let cseq = request.cseq().ok_or(ParseError::Malformed("CSeq"))?;
    if cseq.method != request.method {
        return Err(ParseError::CSeqMethod);
    }
    if let Some(mf) = request.headers.get("Max-Forwards") {
        mf.trim()
            .parse::<u8>()
            .map_err(|_| ParseError::Malformed("Max-Forwards"))?;
    }
    if let Some(e) = request.headers.get("Expires") {
        e.trim()
            .parse::<u32>()
            .map_err(|_| ParseError::Malformed("Expires"))?;
    }
    check_request_addresses(&request)?;
    Ok(Message::Request(request))
}

/// Headers that carry one value (RFC 3261 §20, §25.1): a second line or a
/// comma-separated second value is an error, not a choice.
const SINGLE: [&str; 8] = [
    "Call-ID",
    "Content-Length",
    "Content-Type",
    "CSeq",
    "From",
    "Max-Forwards",
    "To",
    "Expires",
];

fn check_common(m: &impl HasHeaders) -> Result<(), ParseError> {
    let h = m.headers();
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        if h.get(name).is_none_or(|v| v.is_empty()) {
            return Err(ParseError::Missing(name));
        }
    }
    for name in SINGLE {
        let mut lines = h.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name));
        let first = lines.next();
        let listed = first.is_some_and(|(_, v)| {
            // A display name may hold a quoted comma; split_list knows quotes
            // (and is only needed, and only allocates, when there is one).
            name != "Content-Type" && v.contains(',') && split_list(v).len() > 1
        });
        if lines.next().is_some() || listed {
            return Err(ParseError::Repeated(name));
        }
    }
    // Every Via must be readable, not only the top one (RFC 4475 badinv01).
    for via in h.get_all("Via") {
        Via::parse(via)?;
    }
    m.from_hdr().ok_or(ParseError::Malformed("From"))?;
    m.to_hdr().ok_or(ParseError::Malformed("To"))?;
    CSeq::parse(h.get("CSeq").unwrap_or(""))?;
    Ok(())
}

/// Every Contact, Route and Record-Route value of a request must parse,
/// and a Contact's `expires` fit in 32 bits (RFC 4475 badinv01, regbadct,
/// scalarlg), so a malformed request is refused before it is challenged.
fn check_request_addresses(r: &Request) -> Result<(), ParseError> {
    for name in ["Contact", "Route", "Record-Route"] {
        for v in r.headers.get_all(name) {
            if name == "Contact" && v.trim() == "*" {
                continue;
            }
            let a = NameAddr::parse(v, name)?;
            if name == "Contact"
                && let Some(e) = a.param("expires")
                && e.trim().parse::<u32>().is_err()
            {
                return Err(ParseError::Malformed("Contact"));
            }
        }
    }
    if r.method == Method::Invite && r.headers.get_all("Contact").count() > 1 {
        return Err(ParseError::Repeated("Contact"));
    }
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Build the answer to a request that failed to parse, from whatever header
/// lines can be read (§8.2.6: Via, From, To, Call-ID and CSeq are copied
/// when present). A response needs a readable top Via to be routed back; with
/// none, `None`: the message is dropped. Responses and ACKs are never
/// answered (§17.2.1).
pub fn salvage_error_response(bytes: &[u8], error: &ParseError) -> Option<Response> {
    let text = String::from_utf8_lossy(bytes.get(..bytes.len().min(16_384))?);
    let first = text.lines().next()?;
    if first.starts_with("SIP/") || first.starts_with("ACK ") {
        return None;
    }
    let mut headers = Headers::default();
    let mut via_ok = false;
    for line in text.split("\r\n").skip(1).take_while(|l| !l.is_empty()) {
        let Some((n, v)) = line.split_once(':') else {
            continue;
        };
        let Some(name) = canonical_name(n.trim()) else {
            continue;
        };
        if !["Via", "From", "To", "Call-ID", "CSeq"].contains(&name) {
            continue;
        }
        if name == "Via" {
            let first_via = split_list(v.trim()).first().map(|f| Via::parse(f).is_ok());
            if !via_ok && first_via != Some(true) {
                // The top Via is unreadable: nowhere to send an answer.
                return None;
            }
            via_ok = true;
        }
        headers.push(name, v.trim());
    }
    if !via_ok {
        return None;
    }
    let status = error.status();
    headers.push("Warning", format!("399 switchboard \"{error}\""));
    headers.push("Reason", format!("SIP;cause={status};text=\"{error}\""));
    Some(Response {
        status,
        reason: reason_phrase(status).to_owned(),
        headers,
        body: Bytes::new(),
    })
}

fn write_headers(out: &mut String, headers: &Headers, body_len: usize) {
    for (n, v) in headers.iter() {
        if n.eq_ignore_ascii_case("Content-Length") {
            continue;
        }
        let _ = write!(out, "{n}: {v}\r\n");
    }
    let _ = write!(out, "Content-Length: {body_len}\r\n\r\n");
}

impl Request {
    /// The option tags of its `Require` header that are not in `supported`
    /// (RFC 3261 §8.2.2.3): a UAS answers them 420 with `Unsupported`.
    /// ACK and CANCEL are never refused for them.
    pub fn unsupported_requirements(&self, supported: &[&str]) -> Vec<String> {
        if matches!(self.method, Method::Ack | Method::Cancel) {
            return Vec::new();
        }
        self.headers
            .get_all("Require")
            .filter(|tag| !supported.iter().any(|s| s.eq_ignore_ascii_case(tag)))
            .map(str::to_owned)
            .collect()
    }

    /// Whether a session offer this node cannot take is refused for its
    /// media types (RFC 3261 §21.4.7, §21.4.13; RFC 4475 §3.4.6, §3.4.15):
    /// 415 for a body that is not SDP (multipart may carry SDP), 406 when
    /// `Accept` admits no SDP answer.
    pub fn media_refusal(&self) -> Option<u16> {
        let main = |v: &str| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        };
        if !self.body.is_empty()
            && let Some(ct) = self.headers.get("Content-Type").map(main)
            && ct != "application/sdp"
            && !ct.starts_with("multipart/")
        {
            return Some(415);
        }
        let mut accept = self.headers.get_all("Accept").map(main).peekable();
        if accept.peek().is_some()
            && !accept.any(|a| a == "application/sdp" || a == "application/*" || a == "*/*")
        {
            return Some(406);
        }
        None
    }

    /// Serialise, with Content-Length set from the body.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = String::with_capacity(512 + self.body.len());
        let _ = write!(out, "{} {} SIP/2.0\r\n", self.method, self.uri);
        write_headers(&mut out, &self.headers, self.body.len());
        let mut v = out.into_bytes();
        v.extend_from_slice(&self.body);
        Bytes::from(v)
    }

    /// A response to this request with the mandatory headers copied (§8.2.6.2).
    /// A To tag is added when `to_tag` is given and the To has none.
    pub fn response(&self, status: u16, to_tag: Option<&str>) -> Response {
        let mut headers = Headers::default();
        for (n, v) in self.headers.iter() {
            if ["Via", "From", "Call-ID", "CSeq"]
                .iter()
                .any(|k| k.eq_ignore_ascii_case(n))
            {
                headers.push(n, v);
            } else if n.eq_ignore_ascii_case("To") {
                match (to_tag, self.to_tag()) {
                    (Some(tag), None) if status > 100 => {
                        headers.push("To", format!("{v};tag={tag}"))
                    }
                    _ => headers.push("To", v),
                }
            }
        }
        headers.push("Server", "Switchboard");
        Response {
            status,
            reason: reason_phrase(status).to_owned(),
            headers,
            body: Bytes::new(),
        }
    }
}

impl Response {
    /// Serialise, with Content-Length set from the body.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = String::with_capacity(384 + self.body.len());
        let _ = write!(out, "SIP/2.0 {} {}\r\n", self.status, self.reason);
        write_headers(&mut out, &self.headers, self.body.len());
        let mut v = out.into_bytes();
        v.extend_from_slice(&self.body);
        Bytes::from(v)
    }

    /// Whether this is a provisional (1xx) response.
    pub fn is_provisional(&self) -> bool {
        self.status < 200
    }
}

impl Message {
    /// Serialise.
    pub fn to_bytes(&self) -> Bytes {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_uris_follow_the_rfc_3261_grammar() {
        let u =
            Uri::parse("sip:alice;day=tuesday@atlanta.com:5070;transport=tcp?subject=x").unwrap();
        assert_eq!(u.user.as_deref(), Some("alice;day=tuesday"));
        assert_eq!((u.host.as_str(), u.port), ("atlanta.com", Some(5070)));
        assert_eq!(u.transport().as_deref(), Some("tcp"));
        assert_eq!(u.headers.as_deref(), Some("subject=x"));
        let u = Uri::parse("sips:%61lice:secret@[2001:DB8::1]").unwrap();
        assert_eq!(
            (u.user.as_deref(), u.host.as_str()),
            (Some("%61lice"), "2001:db8::1")
        );
        assert_eq!(u.to_string(), "sips:%61lice@[2001:db8::1]");
        assert!(
            Uri::parse("sip:my_host.internal").is_ok(),
            "underscores are tolerated"
        );
        for bad in [
            "sip:",
            "sip:@host",
            "sip:a@",
            "sip:a@host:",
            "sip:a@host:99999",
            "sip:a@[::1",
            "sip:a@[not-v6]",
            "sip:a@ho st",
            "sip:a@host;=x",
            "sip:a%zz@host",
            "sip:a@.host",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad}");
        }
    }

    const INVITE: &[u8] = b"INVITE sip:212345678@127.0.0.1 SIP/2.0\r\n\
v: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
t: <sip:212345678@127.0.0.1>\r\n\
f: \"Alice, A\" <sip:100@127.0.0.1>;tag=1928301774\r\n\
i: a84b4c76e66710\r\n\
CSeq: 314159 INVITE\r\n\
Subject: folded\r\n continued\r\n\
m: <sip:100@10.0.0.1:5070>\r\n\
l: 4\r\n\
\r\n\
v=0\r\nextra";

    #[test]
    fn parses_compact_folded_and_truncates_body() {
        let Message::Request(r) = parse(INVITE, DEFAULT_MAX_MESSAGE).unwrap() else {
            panic!("request expected")
        };
        assert_eq!(r.method, Method::Invite);
        assert_eq!(r.uri.user.as_deref(), Some("212345678"));
        assert_eq!(r.call_id(), "a84b4c76e66710");
        assert_eq!(r.from_tag().as_deref(), Some("1928301774"));
        assert_eq!(r.headers.get("Subject"), Some("folded continued"));
        assert_eq!(&r.body[..], b"v=0\r");
        let via = r.top_via().unwrap();
        assert_eq!(via.branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(via.param("rport"), Some(None));
        assert_eq!(via.sent_by(), "10.0.0.1:5070");
        assert_eq!(r.contacts()[0].uri.port, Some(5070));
    }

    #[test]
    fn roundtrip_keeps_meaning() {
        let m = parse(INVITE, DEFAULT_MAX_MESSAGE).unwrap();
        let again = parse(&m.to_bytes(), DEFAULT_MAX_MESSAGE).unwrap();
        assert_eq!(m.headers().get("CSeq"), again.headers().get("CSeq"));
        assert_eq!(m, again);
    }

    #[test]
    fn extension_method_parses() {
        let raw = b"FOO sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 FOO\r\n\r\n";
        let Message::Request(r) = parse(raw, DEFAULT_MAX_MESSAGE).unwrap() else {
            panic!()
        };
        assert_eq!(r.method, Method::Other("FOO".into()));
    }

    #[test]
    fn errors_name_their_answer() {
        let no_callid = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCSeq: 1 OPTIONS\r\n\r\n";
        assert_eq!(parse(no_callid, 1000), Err(ParseError::Missing("Call-ID")));
        let mismatch = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n";
        let err = parse(mismatch, 1000).unwrap_err();
        assert_eq!(err, ParseError::CSeqMethod);
        let resp = salvage_error_response(mismatch, &err).unwrap();
        assert_eq!(resp.status, 400);
        assert!(resp.headers.get("Warning").unwrap().contains("CSeq"));
        let v3 = b"OPTIONS sip:a@b SIP/3.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n\r\n";
        assert_eq!(parse(v3, 1000).unwrap_err().status(), 505);
        assert!(matches!(
            parse(&[b'x'; 2000], 1000),
            Err(ParseError::TooLarge { .. })
        ));
        let short = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 50\r\n\r\nabc";
        assert_eq!(parse(short, 1000), Err(ParseError::ShortBody));
    }

    /// Bounded random mutation of a valid message: parse and salvage must
    /// return, never panic. The seed is fixed; a failure names the input.
    #[test]
    fn garbage_never_panics() {
        let mut rng = 0x2545F4914F6CDD1Du64;
        for len in 0..20_000 {
            let mut buf = INVITE.to_vec();
            for _ in 0..(len % 17 + 1) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let i = (rng as usize) % buf.len();
                buf[i] = (rng >> 32) as u8;
            }
            buf.truncate(len % buf.len() + 1);
            if let Err(e) = parse(&buf, DEFAULT_MAX_MESSAGE) {
                let _ = salvage_error_response(&buf, &e);
            }
        }
    }
}
