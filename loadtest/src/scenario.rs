//! Scenarios: the steps every call of a run goes through.
//!
//! A scenario comes from a SIPp XML file (the subset documented in
//! `docs/loadtest.md`), from a built-in (`register`, `call`, `answer`, which
//! are XML of the same subset) or from a capture. Anything outside the
//! subset is refused with its line and element, so that a scenario never
//! runs differently from what its author meant.

use std::collections::HashMap;
use std::time::Duration;

use crate::template::{self, Template};

/// Why a scenario was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// Not well-formed XML.
    #[error("line {line}: not well-formed XML: {reason}")]
    Xml {
        /// 1-based line.
        line: u32,
        /// The parser's words.
        reason: String,
    },
    /// Something the subset does not cover.
    #[error("line {line}: <{element}>: {reason}")]
    Unsupported {
        /// 1-based line.
        line: u32,
        /// The element (and attribute, where one is to blame).
        element: String,
        /// What is wrong.
        reason: String,
    },
}

/// Which side starts a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The scenario starts by sending: calls are started at the target rate.
    Client,
    /// The scenario starts by receiving a request: a call starts when one
    /// arrives with an unknown Call-ID.
    Server,
}

/// What a `recv` waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    /// A response with this status.
    Response(u16),
    /// A request with this method (upper case).
    Request(String),
}

/// One step.
#[derive(Debug, Clone)]
pub struct Step {
    /// Line in the source (0 for generated scenarios).
    pub line: u32,
    /// What to do.
    pub kind: StepKind,
    /// Where to go after this step (a resolved `next` label).
    pub next: Option<usize>,
}

/// The kinds of step.
#[derive(Debug, Clone)]
pub enum StepKind {
    /// Send a message built from a template.
    Send {
        /// The message.
        msg: Template,
        /// First retransmission interval over UDP (`retrans`, else T1).
        retrans: Option<Duration>,
    },
    /// Wait for a message.
    Recv {
        /// What matches.
        matcher: Matcher,
        /// The call may skip this step when a later one matches.
        optional: bool,
        /// How long to wait (else the run's receive timeout).
        timeout: Option<Duration>,
        /// Where to go on timeout instead of failing.
        on_timeout: Option<usize>,
        /// Keep the challenge for `[authentication]`.
        auth: bool,
        /// Keep Record-Route and Contact for `[routes]` and `[next_url]`.
        rrs: bool,
    },
    /// Wait; `None` waits the run's hold time.
    Pause(Option<Duration>),
    /// Do nothing (a place to jump to).
    Nop,
}

/// A parsed scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Its name.
    pub name: String,
    /// The steps; labels are resolved into `next` indices.
    pub steps: Vec<Step>,
    /// Client or server.
    pub role: Role,
}

/// Attributes that change nothing in how a call runs (SIPp's screen and
/// statistics presentation); accepted and ignored.
const COSMETIC: &[&str] = &[
    "crlf",
    "display",
    "rtd",
    "start_rtd",
    "repeat_rtd",
    "ignoresdp",
];

impl Scenario {
    /// Parse SIPp XML, refusing what the subset does not cover.
    pub fn from_xml(text: &str) -> Result<Scenario, Error> {
        // SIPp files name their DTD (`<!DOCTYPE scenario SYSTEM "sipp.dtd">`).
        let options = roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        };
        let doc =
            roxmltree::Document::parse_with_options(text, options).map_err(|e| Error::Xml {
                line: e.pos().row,
                reason: e.to_string(),
            })?;
        let root = doc.root_element();
        let line_of = |n: roxmltree::Node| doc.text_pos_at(n.range().start).row;
        let unsupported = |n: roxmltree::Node, what: &str, reason: &str| Error::Unsupported {
            line: line_of(n),
            element: what.to_owned(),
            reason: reason.to_owned(),
        };
        if root.tag_name().name() != "scenario" {
            return Err(unsupported(
                root,
                root.tag_name().name(),
                "the root must be <scenario>",
            ));
        }
        let name = root.attribute("name").unwrap_or("scenario").to_owned();
        let mut steps = Vec::new();
        let mut labels: HashMap<String, usize> = HashMap::new();
        // (step index, label, line) to resolve once every label is known.
        let mut jumps: Vec<(usize, String, u32, bool)> = Vec::new();
        for node in root.children().filter(|n| n.is_element()) {
            let tag = node.tag_name().name();
            let line = line_of(node);
            let allow = |allowed: &[&str]| -> Result<(), Error> {
                for a in node.attributes() {
                    if !allowed.contains(&a.name()) && !COSMETIC.contains(&a.name()) {
                        return Err(unsupported(
                            node,
                            &format!("{tag} {}", a.name()),
                            "attribute not in the supported subset",
                        ));
                    }
                }
                Ok(())
            };
            let no_children = || -> Result<(), Error> {
                match node.children().find(|c| c.is_element()) {
                    Some(c) => Err(unsupported(
                        c,
                        c.tag_name().name(),
                        "element not in the supported subset (no actions, no regular expressions)",
                    )),
                    None => Ok(()),
                }
            };
            let ms = |attr: &str| -> Result<Option<Duration>, Error> {
                match node.attribute(attr) {
                    None => Ok(None),
                    Some(v) => v
                        .trim()
                        .parse::<u64>()
                        .map(|v| Some(Duration::from_millis(v)))
                        .map_err(|_| {
                            unsupported(node, &format!("{tag} {attr}"), "expected milliseconds")
                        }),
                }
            };
            let kind = match tag {
                "send" => {
                    allow(&["retrans", "next"])?;
                    no_children()?;
                    let text: String = node.children().filter_map(|c| c.text()).collect();
                    let msg = template::parse_message(&text).map_err(|e| Error::Unsupported {
                        line: line + e.line,
                        element: "send".into(),
                        reason: e.reason,
                    })?;
                    StepKind::Send {
                        msg,
                        retrans: ms("retrans")?,
                    }
                }
                "recv" => {
                    allow(&[
                        "response",
                        "request",
                        "optional",
                        "timeout",
                        "ontimeout",
                        "next",
                        "auth",
                        "rrs",
                    ])?;
                    no_children()?;
                    let matcher = match (node.attribute("response"), node.attribute("request")) {
                        (Some(code), None) => {
                            Matcher::Response(code.trim().parse().map_err(|_| {
                                unsupported(node, "recv response", "expected a status code")
                            })?)
                        }
                        (None, Some(m)) => Matcher::Request(m.trim().to_ascii_uppercase()),
                        _ => {
                            return Err(unsupported(
                                node,
                                "recv",
                                "exactly one of response= or request= is needed",
                            ));
                        }
                    };
                    let flag = |a: &str| -> Result<bool, Error> {
                        match node.attribute(a) {
                            None | Some("false") => Ok(false),
                            Some("true") => Ok(true),
                            Some(_) => Err(unsupported(
                                node,
                                &format!("recv {a}"),
                                "only true or false is supported",
                            )),
                        }
                    };
                    if let Some(l) = node.attribute("ontimeout") {
                        jumps.push((steps.len(), l.to_owned(), line, true));
                    }
                    StepKind::Recv {
                        matcher,
                        optional: flag("optional")?,
                        timeout: ms("timeout")?,
                        on_timeout: None,
                        auth: flag("auth")?,
                        rrs: flag("rrs")?,
                    }
                }
                "pause" | "timewait" => {
                    allow(&["milliseconds", "next"])?;
                    no_children()?;
                    StepKind::Pause(ms("milliseconds")?)
                }
                "nop" => {
                    allow(&["next"])?;
                    no_children()?;
                    StepKind::Nop
                }
                "label" => {
                    allow(&["id"])?;
                    let id = node
                        .attribute("id")
                        .ok_or_else(|| unsupported(node, "label", "a label needs id="))?;
                    if labels.insert(id.to_owned(), steps.len()).is_some() {
                        return Err(unsupported(
                            node,
                            "label",
                            &format!("label {id} defined twice"),
                        ));
                    }
                    continue;
                }
                "ResponseTimeRepartition" | "CallLengthRepartition" => continue,
                other => {
                    return Err(unsupported(
                        node,
                        other,
                        "element not in the supported subset",
                    ));
                }
            };
            if let Some(l) = node.attribute("next") {
                jumps.push((steps.len(), l.to_owned(), line, false));
            }
            steps.push(Step {
                line,
                kind,
                next: None,
            });
        }
        for (at, label, line, timeout) in jumps {
            let to = *labels.get(&label).ok_or_else(|| Error::Unsupported {
                line,
                element: if timeout { "recv ontimeout" } else { "next" }.into(),
                reason: format!("no <label id=\"{label}\">"),
            })?;
            match (&mut steps[at].kind, timeout) {
                (StepKind::Recv { on_timeout, .. }, true) => *on_timeout = Some(to),
                _ => steps[at].next = Some(to),
            }
        }
        let role = match steps.first().map(|s| &s.kind) {
            Some(StepKind::Send { .. }) => Role::Client,
            Some(StepKind::Recv {
                matcher: Matcher::Request(m),
                ..
            }) if m != "ACK" => Role::Server,
            _ => {
                return Err(Error::Unsupported {
                    line: steps.first().map_or(1, |s| s.line),
                    element: "scenario".into(),
                    reason: "a scenario starts with <send> or with <recv request=...>".into(),
                });
            }
        };
        Ok(Scenario { name, steps, role })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UAC: &str = r#"<?xml version="1.0"?>
<scenario name="t">
  <send retrans="500"><![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Call-ID: [call_id]
      Content-Length: [len]

      v=0
  ]]></send>
  <recv response="100" optional="true"/>
  <recv response="407" optional="true" auth="true" next="again"/>
  <recv response="200" rtd="true"/>
  <label id="again"/>
  <pause milliseconds="20"/>
  <pause/>
  <ResponseTimeRepartition value="10, 20"/>
</scenario>"#;

    #[test]
    fn parses_the_subset_and_resolves_labels() {
        let s = Scenario::from_xml(UAC).unwrap();
        assert_eq!(s.role, Role::Client);
        assert_eq!(s.steps.len(), 6);
        assert_eq!(s.steps[2].next, Some(4));
        assert!(matches!(
            s.steps[2].kind,
            StepKind::Recv {
                auth: true,
                optional: true,
                matcher: Matcher::Response(407),
                ..
            }
        ));
        assert!(
            matches!(s.steps[4].kind, StepKind::Pause(Some(d)) if d == Duration::from_millis(20))
        );
        assert!(matches!(s.steps[5].kind, StepKind::Pause(None)));
        assert_eq!(s.steps[1].line, 10);
    }

    #[test]
    fn refuses_what_is_outside_the_subset_with_line_and_element() {
        let bad = UAC.replace(
            r#"<recv response="200" rtd="true"/>"#,
            "<recv response=\"200\">\n<action><ereg regexp=\"x\" search_in=\"msg\" assign_to=\"1\"/></action></recv>",
        );
        let e = Scenario::from_xml(&bad).unwrap_err();
        assert_eq!(
            e,
            Error::Unsupported {
                line: 13,
                element: "action".into(),
                reason: "element not in the supported subset (no actions, no regular expressions)"
                    .into()
            }
        );
        let bad = UAC.replace(
            "<pause/>",
            "<pause distribution=\"uniform\" min=\"1\" max=\"2\"/>",
        );
        let e = Scenario::from_xml(&bad).unwrap_err().to_string();
        assert!(e.starts_with("line 15: <pause distribution>"), "{e}");
        let bad = UAC.replace("<pause/>", "<sendCmd/>");
        let e = Scenario::from_xml(&bad).unwrap_err().to_string();
        assert!(e.starts_with("line 15: <sendCmd>"), "{e}");
        let bad = UAC.replace("next=\"again\"", "next=\"nowhere\"");
        let e = Scenario::from_xml(&bad).unwrap_err().to_string();
        assert!(e.contains("no <label id=\"nowhere\">"), "{e}");
        let bad = UAC.replace("[call_id]", "[tdmmap]");
        let e = Scenario::from_xml(&bad).unwrap_err().to_string();
        assert!(
            e.starts_with("line 5: <send>: unknown keyword [tdmmap]"),
            "{e}"
        );
    }

    #[test]
    fn a_server_scenario_starts_by_receiving_a_request() {
        let s = Scenario::from_xml(
            r#"<scenario><recv request="invite"/><send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
Content-Length: 0
]]></send></scenario>"#,
        )
        .unwrap();
        assert_eq!(s.role, Role::Server);
        assert!(Scenario::from_xml("<scenario><recv response=\"200\"/></scenario>").is_err());
        assert!(matches!(
            Scenario::from_xml("<scenario><send>").unwrap_err(),
            Error::Xml { line: 1, .. }
        ));
    }
}
