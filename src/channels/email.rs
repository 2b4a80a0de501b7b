//! Builds the MIME message shared by the `smtp` and `file` providers: text + HTML alternative,
//! cc / bcc (bcc only in the envelope), reply-to, `Message-ID`, `In-Reply-To` / `References`.

use super::{Outbound, SendError};
use lettre::message::{header::ContentType, Attachment, Mailbox, MultiPart, SinglePart};
use lettre::Message;

fn mailbox(field: &str, value: &str) -> Result<Mailbox, SendError> {
    value
        .parse()
        .map_err(|e| SendError::permanent(format!("{field} {value:?} is not a usable address: {e}")))
}

/// The RFC 5322 message for `msg`. Address errors are permanent: retrying cannot fix them.
pub fn build(msg: &Outbound) -> Result<Message, SendError> {
    let mut b = Message::builder().from(mailbox("sender", &msg.from)?);
    for to in &msg.to {
        b = b.to(mailbox("recipients", to)?);
    }
    for cc in &msg.cc {
        b = b.cc(mailbox("cc", cc)?);
    }
    for bcc in &msg.bcc {
        b = b.bcc(mailbox("bcc", bcc)?);
    }
    if let Some(reply_to) = &msg.reply_to {
        b = b.reply_to(mailbox("reply_to", reply_to)?);
    }
    b = b.subject(msg.subject.clone().unwrap_or_default());
    b = b.message_id(msg.message_id.clone());
    if let Some(irt) = &msg.in_reply_to {
        b = b.in_reply_to(irt.clone());
    }
    let mut references = msg.references.clone();
    if let Some(irt) = &msg.in_reply_to {
        if !references.contains(irt) {
            references.push(irt.clone());
        }
    }
    if !references.is_empty() {
        b = b.references(references.join(" "));
    }
    let text = msg.text.clone().unwrap_or_default();
    let built = match (&msg.html, msg.attachments.is_empty()) {
        (Some(html), true) => b.multipart(MultiPart::alternative_plain_html(text, html.clone())),
        (None, true) => b.singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(text)),
        (html, false) => {
            let mut mixed = match html {
                Some(html) => MultiPart::mixed().multipart(MultiPart::alternative_plain_html(text, html.clone())),
                None => MultiPart::mixed().singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(text)),
            };
            for a in &msg.attachments {
                let ct = ContentType::parse(&a.content_type)
                    .map_err(|e| SendError::permanent(format!("attachment {:?}: content type {:?}: {e}", a.filename, a.content_type)))?;
                mixed = mixed.singlepart(Attachment::new(a.filename.clone()).body(a.content.clone(), ct));
            }
            b.multipart(mixed)
        }
    };
    built.map_err(|e| SendError::permanent(format!("cannot build the email: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Outbound {
        Outbound {
            public_id: uuid::Uuid::nil(),
            tenant_id: "acme".into(),
            channel: "email".into(),
            from: "Acme <noreply@acme.example>".into(),
            to: vec!["ann@example.com".into()],
            cc: vec!["cat@example.com".into()],
            bcc: vec!["hidden@example.com".into()],
            reply_to: Some("help@acme.example".into()),
            subject: Some("Hello".into()),
            text: Some("Hi Ann".into()),
            html: Some("<p>Hi <b>Ann</b></p>".into()),
            message_id: Some("<abc@acme.example>".into()),
            in_reply_to: Some("<prev@example.com>".into()),
            references: vec!["<root@example.com>".into()],
            metadata: serde_json::json!({}),
            variables: serde_json::json!({}),
            attachments: vec![],
        }
    }

    #[test]
    fn headers_parts_and_envelope() {
        let m = build(&sample()).unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
        assert!(raw.contains("Message-ID: <abc@acme.example>"), "{raw}");
        assert!(raw.contains("In-Reply-To: <prev@example.com>"), "{raw}");
        assert!(raw.contains("References: <root@example.com> <prev@example.com>"), "{raw}");
        assert!(raw.contains("Reply-To: help@acme.example"), "{raw}");
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert!(!raw.contains("hidden@example.com"), "bcc stays out of the headers");
        let rcpt: Vec<String> = m.envelope().to().iter().map(|a| a.to_string()).collect();
        assert_eq!(rcpt, ["ann@example.com", "cat@example.com", "hidden@example.com"]);
    }

    /// Everything that would make a strict MTA refuse or a DKIM signature break: a line not ended
    /// by CRLF (bare LF, bare CR), a line over 998 octets, an octet outside 7-bit ASCII.
    fn wire_faults(raw: &[u8]) -> Vec<String> {
        let mut faults = Vec::new();
        for (n, line) in raw.split_inclusive(|&b| b == b'\n').enumerate() {
            let Some(content) = line.strip_suffix(b"\r\n") else {
                faults.push(format!("line {n} does not end in CRLF: {:?}", String::from_utf8_lossy(line)));
                continue;
            };
            if content.contains(&b'\r') {
                faults.push(format!("line {n} has a bare CR"));
            }
            if content.len() > 998 {
                faults.push(format!("line {n} is {} octets long", content.len()));
            }
            if !content.is_ascii() {
                faults.push(format!("line {n} is not 7-bit"));
            }
        }
        faults
    }

    fn attachment(filename: &str, content_type: &str, content: &[u8]) -> crate::channels::Attachment {
        crate::channels::Attachment { filename: filename.into(), content_type: content_type.into(), content: content.to_vec() }
    }

    /// The raw header block of a part, unfolded (CRLF + WSP -> WSP).
    fn raw_headers(raw: &[u8], part: &mail_parser::MessagePart) -> String {
        let h = &raw[part.raw_header_offset() as usize..part.raw_body_offset() as usize];
        String::from_utf8(h.to_vec()).unwrap().replace("\r\n ", " ").replace("\r\n\t", "\t")
    }

    #[test]
    fn attachments_are_base64_and_named_in_both_forms() {
        let all_bytes: Vec<u8> = (0..=255u8).cycle().take(1024).collect();
        let long_ascii = format!("{}.pdf", "quarterly-report-".repeat(14));
        let long_unicode = format!("{}.txt", "Отчёт о продажах ".repeat(14));
        let files = [
            attachment("notes.txt", "text/plain", b"line one\nline two\n.\n\nlast line without newline"),
            attachment("all-bytes.bin", "application/octet-stream", &all_bytes),
            attachment("Grüße résumé.txt", "text/plain", "Grüße\nrésumé\n".as_bytes()),
            attachment("a \"quoted\"; name\\.txt", "text/plain", b"q\r\n"),
            attachment(&long_ascii, "application/pdf", b"%PDF-1.4\n"),
            attachment(&long_unicode, "text/plain", &[b'x'; 2000]),
            attachment("=?utf-8?q?not-encoded?=.txt", "text/plain", b"x"),
        ];
        let mut m = sample();
        m.attachments = files.to_vec();
        let raw = build(&m).unwrap().formatted();
        assert_eq!(wire_faults(&raw), Vec::<String>::new(), "{}", String::from_utf8_lossy(&raw));
        let parsed = mail_parser::MessageParser::default().parse(&raw).expect("parses");
        let parts: Vec<_> = parsed.attachments().collect();
        assert_eq!(parts.len(), files.len(), "{}", String::from_utf8_lossy(&raw));
        for (file, part) in files.iter().zip(parts) {
            use mail_parser::MimeHeaders;
            let headers = raw_headers(&raw, part);
            assert_eq!(part.attachment_name(), Some(file.filename.as_str()), "{headers}");
            assert_eq!(part.content_transfer_encoding(), Some("base64"), "{headers}");
            assert_eq!(part.contents(), file.content.as_slice(), "{} decodes to its bytes", file.filename);
            let cd = headers.lines().find(|l| l.starts_with("Content-Disposition:")).expect("Content-Disposition");
            assert!(cd.starts_with("Content-Disposition: attachment;"), "{cd}");
            // the plain parameter every reader knows, beside RFC 2231's for those that read it
            assert!(cd.contains(" filename=\""), "a plain filename= fallback: {cd}");
            if !file.filename.is_ascii() {
                assert!(cd.contains(" filename*=utf-8''") || cd.contains(" filename*0*=utf-8''"), "the RFC 2231 form: {cd}");
            }
        }
    }

    #[test]
    fn text_and_html_bodies_never_carry_bare_newlines_or_long_lines() {
        let long = "word ".repeat(400);
        let text = format!("Hallo Jürgen,\nbare LF\rbare CR\r\nCRLF\n{long}\n\n.\nend");
        let html = format!("<p>Grüße</p>\n<p>{long}</p>\r<p>x</p>");
        for (text, html) in [(text.clone(), None), (text.clone(), Some(html.clone())), ("ascii\nonly\rtext".into(), None)] {
            let mut m = sample();
            m.text = Some(text.clone());
            m.html = html.clone();
            for with_attachment in [false, true] {
                m.attachments = if with_attachment { vec![attachment("a.bin", "application/octet-stream", b"\x00")] } else { vec![] };
                let raw = build(&m).unwrap().formatted();
                assert_eq!(wire_faults(&raw), Vec::<String>::new(), "{}", String::from_utf8_lossy(&raw));
                let parsed = mail_parser::MessageParser::default().parse(&raw).expect("parses");
                // line ends as written; a single-part body carries the CRLF that ends its last line
                let lines = |s: &str| s.replace("\r\n", "\n").replace('\r', "\n").trim_end_matches('\n').to_owned();
                assert_eq!(lines(&parsed.body_text(0).unwrap()), lines(&text));
                if let Some(html) = &html {
                    assert_eq!(lines(&parsed.body_html(0).unwrap()), lines(html));
                }
            }
        }
    }

    #[test]
    fn bad_address_is_permanent() {
        let mut m = sample();
        m.to = vec!["not an address".into()];
        let e = build(&m).unwrap_err();
        assert!(e.class.is_permanent());
        assert!(e.detail.contains("recipients"));
    }
}
