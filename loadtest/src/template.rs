//! Message templates with SIPp keywords, parsed once per scenario.
//!
//! A `<send>` text is split into header and body segments at the first
//! empty line; every line loses its leading whitespace, lines end in CRLF,
//! header lines that expand to nothing are dropped (so `[routes]` may be
//! empty), and `[len]` is the byte length of the expanded body.

use std::fmt::Write as _;

/// A keyword of the supported subset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kw {
    /// `[service]`: the target user part.
    Service,
    /// `[remote_ip]`
    RemoteIp,
    /// `[remote_port]`
    RemotePort,
    /// `[local_ip]`
    LocalIp,
    /// `[local_port]`
    LocalPort,
    /// `[local_ip_type]`: 4 or 6.
    LocalIpType,
    /// `[transport]`: UDP or TCP.
    Transport,
    /// `[call_id]`
    CallId,
    /// `[call_number]`
    CallNumber,
    /// `[branch]` (0) and `[branch-N]`: the branch of the step N before.
    Branch(usize),
    /// `[cseq]`: the call's CSeq number.
    Cseq,
    /// `[len]`: body length.
    Len,
    /// `[last_Name:]`: every `Name` header of the last received message, as
    /// whole lines.
    Last(String),
    /// `[last_Request-URI]`
    LastRequestUri,
    /// `[last_cseq_number]`
    LastCseqNumber,
    /// `[fieldN]`: column N of the injection row.
    Field(usize),
    /// `[peer_tag_param]`: `;tag=` and the peer's tag, or nothing.
    PeerTagParam,
    /// `[pid]`
    Pid,
    /// `[media_ip]`
    MediaIp,
    /// `[media_port]`
    MediaPort,
    /// `[media_ip_type]`
    MediaIpType,
    /// `[routes]`: the Route lines from a `rrs` recv, or nothing.
    Routes,
    /// `[next_url]`: the Contact URI from a `rrs` recv, or the original target.
    NextUrl,
    /// `[authentication]` with optional `username=` and `password=`.
    Authentication {
        /// User name (default: field 0).
        username: Option<Vec<Seg>>,
        /// Password (default: field 1).
        password: Option<Vec<Seg>>,
    },
}

/// A piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// Literal text.
    Lit(String),
    /// A keyword.
    Kw(Kw),
}

/// A parsed `<send>` text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    /// Header lines (each a segment list).
    pub head: Vec<Vec<Seg>>,
    /// Body lines.
    pub body: Vec<Vec<Seg>>,
}

/// A template error, with the line within the `<send>` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// 0-based line within the text.
    pub line: u32,
    /// What is wrong.
    pub reason: String,
}

/// Parse a `<send>` text.
pub fn parse_message(text: &str) -> Result<Template, TemplateError> {
    let mut t = Template::default();
    let mut in_body = false;
    let mut started = false;
    let mut body_lines: Vec<(u32, &str)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        let line = line.trim_end_matches('\r');
        let n = u32::try_from(i).unwrap_or(u32::MAX);
        if !started {
            if line.is_empty() {
                continue;
            }
            started = true;
        }
        if !in_body && line.is_empty() {
            in_body = true;
            continue;
        }
        if in_body {
            body_lines.push((n, line));
        } else {
            t.head
                .push(parse_segs(line).map_err(|reason| TemplateError { line: n, reason })?);
        }
    }
    while body_lines.last().is_some_and(|(_, l)| l.is_empty()) {
        body_lines.pop();
    }
    for (n, line) in body_lines {
        t.body
            .push(parse_segs(line).map_err(|reason| TemplateError { line: n, reason })?);
    }
    if t.head.is_empty() {
        return Err(TemplateError {
            line: 0,
            reason: "empty message".into(),
        });
    }
    Ok(t)
}

/// Split a line into literal and keyword segments.
pub fn parse_segs(line: &str) -> Result<Vec<Seg>, String> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut rest = line;
    while let Some(open) = rest.find('[') {
        lit.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = matching_close(after).ok_or_else(|| format!("unclosed keyword in {line:?}"))?;
        let inner = &after[..close];
        if !lit.is_empty() {
            out.push(Seg::Lit(std::mem::take(&mut lit)));
        }
        out.push(Seg::Kw(keyword(inner)?));
        rest = &after[close + 1..];
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        out.push(Seg::Lit(lit));
    }
    Ok(out)
}

fn matching_close(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' if depth == 0 => return Some(i),
            ']' => depth -= 1,
            _ => {}
        }
    }
    None
}

fn keyword(inner: &str) -> Result<Kw, String> {
    let kw = match inner {
        "service" => Kw::Service,
        "remote_ip" => Kw::RemoteIp,
        "remote_port" => Kw::RemotePort,
        "local_ip" => Kw::LocalIp,
        "local_port" => Kw::LocalPort,
        "local_ip_type" => Kw::LocalIpType,
        "transport" => Kw::Transport,
        "call_id" => Kw::CallId,
        "call_number" => Kw::CallNumber,
        "branch" => Kw::Branch(0),
        "cseq" => Kw::Cseq,
        "len" => Kw::Len,
        "peer_tag_param" => Kw::PeerTagParam,
        "pid" => Kw::Pid,
        "media_ip" => Kw::MediaIp,
        "media_port" => Kw::MediaPort,
        "media_ip_type" => Kw::MediaIpType,
        "routes" => Kw::Routes,
        "next_url" => Kw::NextUrl,
        "last_Request-URI" => Kw::LastRequestUri,
        "last_cseq_number" => Kw::LastCseqNumber,
        _ => {
            if let Some(n) = inner.strip_prefix("branch-") {
                Kw::Branch(n.parse().map_err(|_| format!("bad keyword [{inner}]"))?)
            } else if let Some(n) = inner.strip_prefix("field") {
                Kw::Field(
                    n.parse()
                        .map_err(|_| format!("unknown keyword [{inner}]"))?,
                )
            } else if let Some(h) = inner.strip_prefix("last_") {
                let h = h.strip_suffix(':').unwrap_or(h);
                if h.is_empty() || h.contains(|c: char| c.is_whitespace() || c == ':') {
                    return Err(format!("unknown keyword [{inner}]"));
                }
                Kw::Last(h.to_owned())
            } else if let Some(args) = inner.strip_prefix("authentication") {
                authentication(args)?
            } else {
                return Err(format!("unknown keyword [{inner}]"));
            }
        }
    };
    Ok(kw)
}

fn authentication(args: &str) -> Result<Kw, String> {
    let (mut username, mut password) = (None, None);
    let mut depth = 0usize;
    let mut start = 0;
    let mut words = Vec::new();
    for (i, c) in args.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            c if c.is_whitespace() && depth == 0 => {
                words.push(&args[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    words.push(&args[start..]);
    for w in words.into_iter().filter(|w| !w.is_empty()) {
        match w.split_once('=') {
            Some(("username", v)) => username = Some(parse_segs(v)?),
            Some(("password", v)) => password = Some(parse_segs(v)?),
            _ => return Err(format!("[authentication]: unsupported argument {w:?}")),
        }
    }
    Ok(Kw::Authentication { username, password })
}

/// What keywords expand to, for one call at one moment.
pub trait Context {
    /// Append the value of `kw` (never `Len` or `Authentication`, which the
    /// renderer handles).
    fn value(&self, kw: &Kw, out: &mut String);
}

/// Expand a segment list.
pub fn expand(segs: &[Seg], cx: &dyn Context, out: &mut String) {
    for s in segs {
        match s {
            Seg::Lit(l) => out.push_str(l),
            Seg::Kw(k) => cx.value(k, out),
        }
    }
}

/// A rendered message and, when it asked for `[authentication]`, where the
/// credentials go.
#[derive(Debug)]
pub struct Rendered {
    /// The message text.
    pub text: String,
    /// Byte range of the authentication placeholder and its username and
    /// password.
    pub auth: Option<(std::ops::Range<usize>, String, String)>,
}

/// Render `t`: body first (for `[len]`), header lines that expand to
/// nothing dropped.
pub fn render(t: &Template, cx: &dyn Context, default_user: &str, default_pass: &str) -> Rendered {
    let mut body = String::new();
    for line in &t.body {
        expand(line, cx, &mut body);
        body.push_str("\r\n");
    }
    let mut text = String::with_capacity(512 + body.len());
    let mut auth = None;
    for line in &t.head {
        let at = text.len();
        for s in line {
            match s {
                Seg::Lit(l) => text.push_str(l),
                Seg::Kw(Kw::Len) => {
                    let _ = write!(text, "{}", body.len());
                }
                Seg::Kw(Kw::Authentication { username, password }) => {
                    let mut u = String::new();
                    let mut p = String::new();
                    match username {
                        Some(segs) => expand(segs, cx, &mut u),
                        None => u.push_str(default_user),
                    }
                    match password {
                        Some(segs) => expand(segs, cx, &mut p),
                        None => p.push_str(default_pass),
                    }
                    let start = text.len();
                    auth = Some((start..start, u, p));
                }
                Seg::Kw(k) => cx.value(k, &mut text),
            }
        }
        if text.len() == at {
            continue;
        }
        // A keyword may expand to several lines ([last_Via:], [routes]).
        if text.ends_with("\r\n") {
            text.truncate(text.len() - 2);
        }
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    text.push_str(&body);
    Rendered { text, auth }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Cx;
    impl Context for Cx {
        fn value(&self, kw: &Kw, out: &mut String) {
            match kw {
                Kw::Service => out.push_str("200"),
                Kw::Routes => {}
                Kw::Last(h) => out.push_str(&format!("{h}: a\r\n{h}: b")),
                Kw::Field(n) => out.push_str(&format!("f{n}")),
                _ => out.push('?'),
            }
        }
    }

    #[test]
    fn renders_lines_len_and_drops_empty_header_lines() {
        let t = parse_message(
            "\n   INVITE sip:[service]@x SIP/2.0\n   [routes]\n   [last_Via:]\n   Content-Length: [len]\n\n   v=0\n   o=[service]\n\n",
        )
        .unwrap();
        let r = render(&t, &Cx, "u", "p");
        assert_eq!(
            r.text,
            "INVITE sip:200@x SIP/2.0\r\nVia: a\r\nVia: b\r\nContent-Length: 12\r\n\r\nv=0\r\no=200\r\n"
        );
        assert!(r.auth.is_none());
    }

    #[test]
    fn authentication_takes_nested_keywords() {
        let t = parse_message("REGISTER sip:x SIP/2.0\n[authentication username=[field0] password=[field1]]\nContent-Length: 0\n").unwrap();
        let r = render(&t, &Cx, "u", "p");
        let (range, u, p) = r.auth.unwrap();
        assert_eq!((u.as_str(), p.as_str()), ("f0", "f1"));
        // The placeholder line is gone; the credentials go in its place.
        assert!(
            r.text[range.start..].starts_with("Content-Length: 0"),
            "{}",
            r.text
        );
        assert!(parse_segs("[authentication realm=x]").is_err());
    }

    #[test]
    fn unknown_keywords_are_named() {
        assert_eq!(
            parse_segs("a [tdmmap] b").unwrap_err(),
            "unknown keyword [tdmmap]"
        );
        assert_eq!(
            parse_segs("a [call_id").unwrap_err(),
            "unclosed keyword in \"a [call_id\""
        );
        assert_eq!(
            parse_segs("x[branch-2]").unwrap(),
            vec![Seg::Lit("x".into()), Seg::Kw(Kw::Branch(2))]
        );
    }
}
