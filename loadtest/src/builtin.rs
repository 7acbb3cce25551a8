//! The built-in scenarios, written in the same XML subset a user may load
//! (print one with `switchboard-load dump NAME` and start from it).
//!
//! Fields: `register` and `call` use `[field0]` (the member's number) and
//! `[field1]` (its password); `call` dials `[field2]` when the row has one,
//! else `[service]`.

/// The SDP of an offer or an answer: PCMU and telephone events on
/// `[media_port]` (the RTP echo's port when it runs).
const SDP: &str = "      Content-Type: application/sdp\n      Content-Length: [len]\n\n      v=0\n      o=- [call_number] 1 IN IP[media_ip_type] [media_ip]\n      s=-\n      c=IN IP[media_ip_type] [media_ip]\n      t=0 0\n      m=audio [media_port] RTP/AVP 0 101\n      a=rtpmap:0 PCMU/8000\n      a=rtpmap:101 telephone-event/8000\n      a=sendrecv\n";

/// `register`: REGISTER, answer a 401 with digest credentials, expect 200.
pub fn register(expires: u32) -> String {
    let request = |auth: &str| {
        format!(
            r#"
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:[field0]@[remote_ip]:[remote_port]>;tag=[pid]-[call_number]
      To: <sip:[field0]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: [cseq] REGISTER
      Contact: <sip:[field0]@[local_ip]:[local_port]>
      Expires: {expires}
      Max-Forwards: 70
      User-Agent: switchboard-load{auth}
      Content-Length: 0
"#
        )
    };
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<scenario name="register">
  <send><![CDATA[{first}]]></send>
  <recv response="401" optional="true" auth="true" next="auth"/>
  <recv response="200" next="done"/>
  <label id="auth"/>
  <send><![CDATA[{second}]]></send>
  <recv response="200"/>
  <label id="done"/>
</scenario>
"#,
        first = request(""),
        second = request("\n      [authentication username=[field0] password=[field1]]"),
    )
}

/// `call`: INVITE with an SDP offer (answering a 401/407 challenge with the
/// caller's credentials), 100/180/183 optional, 200, ACK, hold, BYE, 200.
/// `callee` is `[field2]` or `[service]`.
pub fn call(callee: &str) -> String {
    let invite = |auth: &str| {
        format!(
            r#"
      INVITE sip:{callee}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:[field0]@[remote_ip]:[remote_port]>;tag=[pid]-[call_number]
      To: <sip:{callee}@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: [cseq] INVITE
      Contact: <sip:[field0]@[local_ip]:[local_port]>
      Max-Forwards: 70
      User-Agent: switchboard-load{auth}
{SDP}"#
        )
    };
    let in_dialog = |method: &str, cseq: &str| {
        format!(
            r#"
      {method} [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      [routes]
      From: <sip:[field0]@[remote_ip]:[remote_port]>;tag=[pid]-[call_number]
      To: <sip:{callee}@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} {method}
      Contact: <sip:[field0]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0
"#
        )
    };
    // Step numbers matter for [branch-7]: the ACK of a challenge reuses the
    // branch of the INVITE it answers (steps 0..=6 come before it).
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<scenario name="call">
  <send><![CDATA[{first}]]></send>
  <recv response="100" optional="true"/>
  <recv response="407" optional="true" auth="true" next="auth"/>
  <recv response="401" optional="true" auth="true" next="auth"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rrs="true" next="answered"/>
  <label id="auth"/>
  <send><![CDATA[
      ACK sip:{callee}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-7];rport
      From: <sip:[field0]@[remote_ip]:[remote_port]>;tag=[pid]-[call_number]
      To: <sip:{callee}@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: [cseq] ACK
      Max-Forwards: 70
      Content-Length: 0
  ]]></send>
  <send><![CDATA[{second}]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rrs="true"/>
  <label id="answered"/>
  <send><![CDATA[{ack}]]></send>
  <pause/>
  <send><![CDATA[{bye}]]></send>
  <recv response="200"/>
</scenario>
"#,
        first = invite(""),
        second = invite("\n      [authentication username=[field0] password=[field1]]"),
        ack = in_dialog("ACK", "[cseq]"),
        bye = in_dialog("BYE", "[cseq]"),
    )
}

/// `answer`: take an INVITE, optionally ring for `ring_ms`, then answer
/// with `status` (200 with an SDP answer, or a failure), take the ACK, and
/// for a 200 wait for the BYE and answer it.
pub fn answer(ring_ms: u64, status: u16) -> String {
    let ring = if ring_ms > 0 {
        format!(
            r#"
  <send><![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]-[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[service]@[local_ip]:[local_port]>
      Content-Length: 0
  ]]></send>
  <pause milliseconds="{ring_ms}"/>"#
        )
    } else {
        String::new()
    };
    let tail = if status == 200 {
        format!(
            r#"
  <send><![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]-[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[service]@[local_ip]:[local_port]>
{SDP}  ]]></send>
  <recv request="ACK"/>
  <recv request="BYE"/>
  <send><![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
  ]]></send>"#
        )
    } else {
        format!(
            r#"
  <send><![CDATA[
      SIP/2.0 {status} {reason}
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]-[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
  ]]></send>
  <recv request="ACK"/>"#,
            reason = engine::sip::msg::reason_phrase(status)
        )
    };
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<scenario name="answer">
  <recv request="INVITE"/>
  <send><![CDATA[
      SIP/2.0 100 Trying
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
  ]]></send>{ring}{tail}
</scenario>
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Role, Scenario, StepKind};

    #[test]
    fn built_ins_are_in_the_subset() {
        let r = Scenario::from_xml(&register(3600)).unwrap();
        assert_eq!(r.role, Role::Client);
        let c = Scenario::from_xml(&call("[service]")).unwrap();
        assert_eq!(c.role, Role::Client);
        // The challenge ACK is step 7 and reuses step 0's branch.
        assert!(matches!(c.steps[7].kind, StepKind::Send { .. }));
        assert!(matches!(c.steps[0].kind, StepKind::Send { .. }));
        // Both INVITEs keep Content-Type and Content-Length in the header
        // section (an empty line there would start the body).
        for i in [0, 8] {
            let StepKind::Send { msg, .. } = &c.steps[i].kind else {
                panic!("step {i} is not a send")
            };
            let head = format!("{:?}", msg.head);
            assert!(
                head.contains("Content-Type") && head.contains("Len"),
                "{head}"
            );
        }
        for (ring, status) in [(0, 200), (500, 200), (0, 486)] {
            let a = Scenario::from_xml(&answer(ring, status)).unwrap();
            assert_eq!(a.role, Role::Server);
        }
    }
}
