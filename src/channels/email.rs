//! Builds the MIME message shared by the `smtp` and `file` providers: text + HTML alternative,
//! cc / bcc (bcc only in the envelope), reply-to, `Message-ID`, `In-Reply-To` / `References`,
//! attachments.
//!
//! The body (text, HTML, attachments) goes on the wire as 7-bit MIME: every line ends in CRLF,
//! no bare CR or LF, and no line is longer than 998 octets (RFC 5322's hard limit; lettre keeps
//! body lines within 76, the file names built here keep header lines within 78 but for a long
//! plain ASCII name). Strict servers (Postfix `smtpd_forbid_bare_newline`) take it and DKIM
//! signatures survive relaying.

use super::{Attachment, Outbound, SendError};
use crate::domain::address::parse_email;
use base64::Engine;
use lettre::message::header::{ContentTransferEncoding, ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};
use lettre::{Address, Message};

/// The mailbox of an address as the insert trigger stored it (or as an application wrote it:
/// the same rules, `crate::domain::address`), ready for lettre: display name unquoted, the
/// domain in its ASCII form, a quoted local part kept quoted.
pub fn mailbox(field: &str, value: &str) -> Result<Mailbox, SendError> {
    let unusable = |why: &dyn std::fmt::Display| SendError::invalid(format!("{field} {value:?} is not a usable address: {why}"));
    let email = parse_email(value).ok_or_else(|| unusable(&"not a valid email address"))?;
    let address = Address::new(&email.local, &email.domain).map_err(|e| unusable(&e))?;
    Ok(Mailbox::new(email.name, address))
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
    let text = lf_line_ends(msg.text.as_deref().unwrap_or_default());
    let html = msg.html.as_deref().map(lf_line_ends);
    let built = match (html, msg.attachments.is_empty()) {
        (Some(html), true) => b.multipart(MultiPart::alternative_plain_html(text, html)),
        (None, true) => b.singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(text)),
        (html, false) => {
            let mut mixed = match html {
                Some(html) => MultiPart::mixed().multipart(MultiPart::alternative_plain_html(text, html)),
                None => MultiPart::mixed().singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(text)),
            };
            for a in &msg.attachments {
                mixed = mixed.singlepart(attachment_part(a)?);
            }
            b.multipart(mixed)
        }
    };
    built.map_err(|e| SendError::invalid(format!("cannot build the email: {e}")))
}

/// A text or HTML body with every line end (CRLF, lone CR, lone LF) as LF, which lettre writes as
/// CRLF. lettre converts only LF: a lone CR would otherwise reach the wire in a `7bit` part
/// (RFC 5322 allows CR only before LF). lettre then picks `7bit` for short ASCII lines and
/// quoted-printable or base64 for anything else (non-ASCII, lines of 76 characters or more).
fn lf_line_ends(body: &str) -> String {
    body.replace("\r\n", "\n").replace('\r', "\n")
}

/// One attachment as a MIME part, always `base64`: the file arrives with exactly its stored bytes
/// and nothing in it can break the wire format. (Left to itself lettre sends an ASCII file `7bit`,
/// bare LFs and over-long lines included.)
fn attachment_part(a: &Attachment) -> Result<SinglePart, SendError> {
    let refuse = |what: String| SendError::invalid(format!("attachment {:?}: {what}", a.filename));
    let ct = ContentType::parse(&a.content_type).map_err(|e| refuse(format!("content type {:?}: {e}", a.content_type)))?;
    let body = Body::new_with_encoding(a.content.clone(), ContentTransferEncoding::Base64)
        .map_err(|_| refuse("cannot be encoded as base64".into()))?;
    Ok(SinglePart::builder().header(ct).header(AttachmentDisposition::new(&a.filename)).body(body))
}

/// `Content-Disposition: attachment` naming the file in the two forms readers look for.
///
/// lettre writes a non-ASCII name only in the RFC 2231 form (`filename*0*=utf-8''...`), which a
/// reader without RFC 2231 does not see at all. A name that is printable ASCII without `"`, `\`
/// or `=?` is written plainly, `filename="name"`. Any other name is written twice:
///
/// 1. `filename*=utf-8''Gr%C3%BC%C3%9Fe.txt` (RFC 2231, the exact name; continued as
///    `filename*0*=`, `filename*1*=`, ... when it does not fit on a line, each piece whole
///    characters), first, so that parsers which keep the first `filename` take the exact one and
///    RFC 2231 continuations join it;
/// 2. `filename="..."`: the quoted name (`\` and `"` escaped) when it is printable ASCII without
///    `=?` (which a reader would take for an encoded-word), otherwise RFC 2047 encoded-words
///    (`"=?utf-8?B?...?="`). RFC 2047 does not bless encoded-words in a parameter, but that is
///    how mail clients (Outlook, Gmail, Thunderbird, Apple Mail) write and read a non-ASCII name.
///
/// The value is built here, already folded: only printable ASCII and our own CRLF SP folds, so
/// the file name cannot inject a header.
#[derive(Debug, Clone)]
struct AttachmentDisposition(HeaderValue);

/// RFC 5322's recommended line length, which the folding keeps to (a plain ASCII name longer
/// than that stays on one line: at most 255 characters, well within the 998 limit).
const LINE: usize = 78;

impl AttachmentDisposition {
    fn new(filename: &str) -> Self {
        let printable = filename.bytes().all(|b| (b' '..=b'~').contains(&b)) && !filename.contains("=?");
        let exact_when_quoted = printable && !filename.contains(['"', '\\']);
        let mut atoms = vec!["attachment;".to_owned()];
        if !exact_when_quoted {
            atoms.extend(rfc2231_filename(filename));
        }
        if printable {
            atoms.push(format!("filename=\"{}\"", filename.replace('\\', "\\\\").replace('"', "\\\"")));
        } else {
            atoms.extend(rfc2047_filename(filename));
        }
        // fold: atoms joined by a space while the line stays within LINE, else by CRLF SP
        let mut folded = String::new();
        let mut line = "Content-Disposition: ".len();
        for (i, atom) in atoms.iter().enumerate() {
            if i > 0 {
                if line + 1 + atom.len() <= LINE {
                    folded.push(' ');
                    line += 1;
                } else {
                    folded.push_str("\r\n ");
                    line = 1;
                }
            }
            folded.push_str(atom);
            line += atom.len();
        }
        let raw = format!("attachment; filename=\"{filename}\"");
        Self(HeaderValue::dangerous_new_pre_encoded(Self::name(), raw, folded))
    }
}

impl Header for AttachmentDisposition {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Content-Disposition")
    }

    /// Never needed (the header is only written); lettre's own `ContentDisposition` parses.
    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Err("AttachmentDisposition is write-only".into())
    }

    fn display(&self) -> HeaderValue {
        self.0.clone()
    }
}

/// The RFC 2231 `filename*` parameter(s), each ending in `;`: one when it fits on a folded line,
/// else numbered continuations, every piece whole characters (a reader may decode the pieces
/// one by one).
fn rfc2231_filename(filename: &str) -> Vec<String> {
    // RFC 5987 attr-char: everything else is percent-encoded
    let encode = |c: char| {
        let mut buf = [0u8; 4];
        c.encode_utf8(&mut buf)
            .bytes()
            .map(|b| match b {
                b'a'..=b'z'
                | b'A'..=b'Z'
                | b'0'..=b'9'
                | b'!'
                | b'#'
                | b'$'
                | b'&'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    let whole = format!("filename*=utf-8''{};", filename.chars().map(encode).collect::<String>());
    if whole.len() < LINE {
        // fits on a folded line after its leading space
        return vec![whole];
    }
    let mut pieces = Vec::new();
    let mut piece = "filename*0*=utf-8''".to_owned();
    for c in filename.chars() {
        let enc = encode(c);
        if piece.len() + enc.len() + 2 > LINE {
            // the folding space before, the `;` after
            piece.push(';');
            pieces.push(std::mem::replace(&mut piece, format!("filename*{}*=", pieces.len() + 1)));
        }
        piece.push_str(&enc);
    }
    piece.push(';');
    pieces.push(piece);
    pieces
}

/// The plain `filename="..."` parameter for a name that is not printable ASCII, as RFC 2047
/// B encoded-words of whole characters separated by spaces (ignored between encoded-words),
/// each atom short enough for a folded line with the `filename="` before it.
fn rfc2047_filename(filename: &str) -> Vec<String> {
    const WORD_BYTES: usize = 39; // 52 base64 characters: `filename="=?utf-8?B?...?=` is 74
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut words: Vec<String> = Vec::new();
    let mut chunk = String::new();
    for c in filename.chars() {
        if chunk.len() + c.len_utf8() > WORD_BYTES {
            words.push(format!("=?utf-8?B?{}?=", b64.encode(&chunk)));
            chunk.clear();
        }
        chunk.push(c);
    }
    words.push(format!("=?utf-8?B?{}?=", b64.encode(&chunk)));
    let last = words.len() - 1;
    words[0].insert_str(0, "filename=\"");
    words[last].push('"');
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Outbound {
        Outbound {
            public_id: uuid::Uuid::nil(),
            tenant_id: "acme".into(),
            channel: crate::domain::vocab::Channel::Email,
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

    /// The raw header block of a part as written (folded).
    fn raw_headers(raw: &[u8], part: &mail_parser::MessagePart) -> String {
        String::from_utf8(raw[part.raw_header_offset() as usize..part.raw_body_offset() as usize].to_vec()).unwrap()
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
            let folded = raw_headers(&raw, part);
            if file.filename != long_ascii {
                // a long plain ASCII name stays on one line (within 998); everything else is folded
                assert!(folded.lines().all(|l| l.len() <= 78), "{folded}");
            }
            let headers = folded.replace("\r\n ", " ");
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
