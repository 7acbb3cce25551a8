//! Dialogs (RFC 3261 §12): identifiers, CSeq spaces, route sets and remote
//! targets, and the construction of in-dialog requests.
//!
//! Implemented: UAS and UAC dialog creation from an INVITE and its 2xx (or a
//! tagged 1xx: early dialogs), loose and strict routing (§12.2.1.1),
//! remote-CSeq ordering (§12.2.2), target refresh from Contact. Not
//! implemented: session timers (RFC 4028), dialog usages other than INVITE.

use bytes::Bytes;

use super::msg::{HasHeaders, Headers, Method, NameAddr, Request, Response, Uri};

/// A dialog identifier: Call-ID with local and remote tags (§12).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    /// Call-ID.
    pub call_id: String,
    /// Our tag.
    pub local_tag: String,
    /// The peer's tag.
    pub remote_tag: String,
}

/// Why an in-dialog request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// §12.2.2: "If the remote sequence number is not empty, but the sequence
    /// number of the request is lower than the remote sequence number, the
    /// request is out of order and MUST be rejected with a 500".
    #[error("CSeq {got} is lower than {expected}")]
    OutOfOrder {
        /// The CSeq of the request.
        got: u32,
        /// The dialog's remote CSeq.
        expected: u32,
    },
    /// The message lacks what a dialog needs (tags, Contact).
    #[error("message cannot establish a dialog: {0}")]
    Incomplete(&'static str),
}

/// One side's state of an INVITE dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    /// Identifier.
    pub id: DialogId,
    /// Local URI with our tag (our From in requests we send).
    pub local: NameAddr,
    /// Remote URI with its tag (our To in requests we send).
    pub remote: NameAddr,
    /// Last CSeq we used.
    pub local_seq: u32,
    /// Highest CSeq the peer used, if any.
    pub remote_seq: Option<u32>,
    /// Where in-dialog requests go (the peer's Contact).
    pub remote_target: Uri,
    /// Route set, in the order our requests carry it.
    pub route_set: Vec<NameAddr>,
}

impl Dialog {
    /// §12.1.1: the UAS side of a dialog created by `request`, answered with
    /// our `local_tag`.
    pub fn uas(request: &Request, local_tag: &str) -> Result<Dialog, Error> {
        let from = request.from_hdr().ok_or(Error::Incomplete("From"))?;
        let mut to = request.to_hdr().ok_or(Error::Incomplete("To"))?;
        let remote_tag = from.tag().ok_or(Error::Incomplete("From tag"))?.to_owned();
        let target = request
            .contacts()
            .into_iter()
            .next()
            .ok_or(Error::Incomplete("Contact"))?;
        to.set_param("tag", Some(local_tag));
        Ok(Dialog {
            id: DialogId {
                call_id: request.call_id().to_owned(),
                local_tag: local_tag.to_owned(),
                remote_tag,
            },
            local: to,
            remote: from,
            local_seq: 0,
            remote_seq: request.cseq().map(|c| c.seq),
            remote_target: target.uri,
            // "The route set MUST be set to the list of URIs in the
            // Record-Route header field from the request, taken in order".
            route_set: request.record_routes(),
        })
    }

    /// §12.1.2: the UAC side of a dialog created by our `request` and a
    /// response with a To tag (a 2xx, or a 1xx for an early dialog).
    pub fn uac(request: &Request, response: &Response) -> Result<Dialog, Error> {
        let from = request.from_hdr().ok_or(Error::Incomplete("From"))?;
        let to = response.to_hdr().ok_or(Error::Incomplete("To"))?;
        let local_tag = from.tag().ok_or(Error::Incomplete("From tag"))?.to_owned();
        let remote_tag = to.tag().ok_or(Error::Incomplete("To tag"))?.to_owned();
        let target = response
            .contacts()
            .into_iter()
            .next()
            .ok_or(Error::Incomplete("Contact"))?;
        // "The route set MUST be set to the list of URIs in the Record-Route
        // header field from the response, taken in reverse order".
        let mut route_set = response.record_routes();
        route_set.reverse();
        Ok(Dialog {
            id: DialogId {
                call_id: request.call_id().to_owned(),
                local_tag,
                remote_tag,
            },
            local: from,
            remote: to,
            local_seq: request.cseq().map_or(1, |c| c.seq),
            remote_seq: None,
            remote_target: target.uri,
            route_set,
        })
    }

    /// §12.2.2: check and record the CSeq of a request from the peer, and
    /// refresh the remote target from a target-refresh request's Contact.
    pub fn handle_request(&mut self, request: &Request) -> Result<(), Error> {
        let seq = request.cseq().map_or(0, |c| c.seq);
        if request.method != Method::Ack && request.method != Method::Cancel {
            if let Some(expected) = self.remote_seq
                && seq < expected
            {
                return Err(Error::OutOfOrder { got: seq, expected });
            }
            self.remote_seq = Some(seq);
        }
        if matches!(request.method, Method::Invite | Method::Update)
            && let Some(c) = request.contacts().into_iter().next()
        {
            self.remote_target = c.uri;
        }
        Ok(())
    }

    /// Refresh the remote target from a 2xx to our re-INVITE or UPDATE.
    pub fn handle_response(&mut self, response: &Response) {
        let refresh = response
            .cseq()
            .is_some_and(|c| matches!(c.method, Method::Invite | Method::Update));
        if refresh
            && (200..300).contains(&response.status)
            && let Some(c) = response.contacts().into_iter().next()
        {
            self.remote_target = c.uri;
        }
    }

    /// §12.2.1.1: a new in-dialog request (not ACK, not CANCEL). `via` is the
    /// full Via value (with a fresh branch), `contact` our Contact URI.
    pub fn request(
        &mut self,
        method: Method,
        via: &str,
        contact: &Uri,
        body: Bytes,
        content_type: Option<&str>,
    ) -> Request {
        self.local_seq += 1;
        let seq = self.local_seq;
        self.build(method, seq, via, Some(contact), body, content_type)
    }

    /// §13.2.2.4: the ACK for a 2xx to the INVITE with CSeq `invite_seq`.
    pub fn ack(
        &self,
        invite_seq: u32,
        via: &str,
        body: Bytes,
        content_type: Option<&str>,
    ) -> Request {
        self.build(Method::Ack, invite_seq, via, None, body, content_type)
    }

    fn build(
        &self,
        method: Method,
        seq: u32,
        via: &str,
        contact: Option<&Uri>,
        body: Bytes,
        content_type: Option<&str>,
    ) -> Request {
        let mut headers = Headers::default();
        headers.push("Via", via);
        headers.push("Max-Forwards", "70");
        let uri = match self.route_set.first() {
            // "If the route set is not empty, and the first URI in the route
            // set contains the lr parameter, the UAC MUST place the remote
            // target URI into the Request-URI and MUST include a Route header
            // field containing the route set values in order".
            Some(first) if first.uri.param("lr").is_some() => {
                for r in &self.route_set {
                    headers.push("Route", r.to_string());
                }
                self.remote_target.clone()
            }
            // Strict routing: the first route becomes the Request-URI and the
            // remote target is appended as the last Route.
            Some(first) => {
                for r in &self.route_set[1..] {
                    headers.push("Route", r.to_string());
                }
                headers.push("Route", format!("<{}>", self.remote_target));
                first.uri.clone()
            }
            None => self.remote_target.clone(),
        };
        headers.push("From", self.local.to_string());
        headers.push("To", self.remote.to_string());
        headers.push("Call-ID", self.id.call_id.clone());
        headers.push("CSeq", format!("{seq} {method}"));
        if let Some(c) = contact {
            headers.push("Contact", format!("<{c}>"));
        }
        if let Some(ct) = content_type.filter(|_| !body.is_empty()) {
            headers.push("Content-Type", ct);
        }
        Request {
            method,
            uri,
            headers,
            body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::msg::{self, Message};

    fn req(raw: &str) -> Request {
        match msg::parse(raw.as_bytes(), 8192).unwrap() {
            Message::Request(r) => r,
            _ => unreachable!(),
        }
    }

    const INVITE: &str = "INVITE sip:200@sb SIP/2.0\r\nVia: SIP/2.0/UDP a:5070;branch=z9hG4bK1\r\n\
        Record-Route: <sip:p1;lr>\r\nRecord-Route: <sip:p2;lr>\r\n\
        From: <sip:100@sb>;tag=ft\r\nTo: <sip:200@sb>\r\nCall-ID: cid\r\nCSeq: 10 INVITE\r\n\
        Contact: <sip:100@10.0.0.1:5070>\r\n\r\n";

    #[test]
    fn uas_dialog_routes_bye_through_record_route_in_order() {
        let invite = req(INVITE);
        let mut d = Dialog::uas(&invite, "lt").unwrap();
        assert_eq!(d.id.remote_tag, "ft");
        let bye = d.request(
            Method::Bye,
            "SIP/2.0/UDP me;branch=z9hG4bK2",
            &Uri::sip(None, "me", None),
            Bytes::new(),
            None,
        );
        assert_eq!(bye.uri.host, "10.0.0.1");
        let routes: Vec<_> = bye.headers.get_all("Route").collect();
        assert_eq!(routes, vec!["<sip:p1;lr>", "<sip:p2;lr>"]);
        assert_eq!(bye.to_tag().as_deref(), Some("ft"));
        assert_eq!(bye.from_tag().as_deref(), Some("lt"));
        assert_eq!(bye.cseq().unwrap().seq, 1);
    }

    #[test]
    fn uac_dialog_reverses_record_route_and_strict_routes() {
        let invite = req(INVITE);
        let mut ok = invite.response(200, Some("rt"));
        ok.headers.push("Record-Route", "<sip:p1>");
        ok.headers.push("Record-Route", "<sip:p2>");
        ok.headers.push("Contact", "<sip:200@10.0.0.2>");
        let mut d = Dialog::uac(&invite, &ok).unwrap();
        assert_eq!(d.route_set[0].uri.host, "p2");
        let bye = d.request(
            Method::Bye,
            "SIP/2.0/UDP me;branch=z9hG4bK3",
            &Uri::sip(None, "me", None),
            Bytes::new(),
            None,
        );
        // p2 has no ;lr: strict routing puts it in the Request-URI.
        assert_eq!(bye.uri.host, "p2");
        let routes: Vec<_> = bye.headers.get_all("Route").collect();
        assert_eq!(routes, vec!["<sip:p1>", "<sip:200@10.0.0.2>"]);
        assert_eq!(bye.cseq().unwrap().seq, 11);
        let ack = d.ack(10, "SIP/2.0/UDP me;branch=z9hG4bK4", Bytes::new(), None);
        assert_eq!(ack.cseq().unwrap().seq, 10);
        assert_eq!(ack.method, Method::Ack);
    }

    #[test]
    fn out_of_order_cseq_is_refused_and_reinvite_refreshes_target() {
        let mut d = Dialog::uas(&req(INVITE), "lt").unwrap();
        let old = req(&INVITE
            .replace("10 INVITE", "9 INFO")
            .replace("INVITE sip", "INFO sip"));
        assert_eq!(
            d.handle_request(&old),
            Err(Error::OutOfOrder {
                got: 9,
                expected: 10
            })
        );
        let reinvite = req(&INVITE
            .replace("10 INVITE", "11 INVITE")
            .replace("10.0.0.1", "10.9.9.9"));
        d.handle_request(&reinvite).unwrap();
        assert_eq!(d.remote_target.host, "10.9.9.9");
        assert_eq!(d.remote_seq, Some(11));
    }
}
