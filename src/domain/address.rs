//! Email addresses as pgcourier stores and sends them: the rules of `et_email_address` and
//! `et_display_name` (triggers/010_addresses.sql), so the email adapter refuses exactly what the
//! insert trigger refuses and reads what the trigger stored as the same mailbox
//! (tests/it/address_corpus.rs runs a shared corpus through both).
//!
//! - address: `local@domain`, at most 254 octets (RFC 5321 path), lower-cased;
//! - local part: a dot-atom of ASCII atext without `-` next to a `.`, at most 64 octets (a
//!   quoted dot-atom is stored unquoted; other quoted local parts such as `"john doe"@x` are
//!   refused: lettre parses the headers it builds back into addresses and cannot carry them);
//! - domain: two or more labels of `a-z 0-9 -` (no `-` first or last), each at most 63 octets,
//!   at most 253 in all; an international domain is converted to its ASCII form with IDNA
//!   (`bücher.de` → `xn--bcher-kva.de`), so no server needs SMTPUTF8 for it;
//! - display name: `Name <local@domain>`, unfolded (a folded line break is a space, a tab a
//!   space), unquoted when written quoted, at most 255 characters, no other control characters;
//!   written back quoted when it holds a header special character.

use std::fmt;

/// A valid email address: an optional display name and the normalised bare address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// The display name, unquoted (`Doe, John`), when there is one.
    pub name: Option<String>,
    /// The part before the last `@`, lower-cased.
    pub local: String,
    /// The ASCII domain, lower-cased.
    pub domain: String,
}

impl Email {
    /// `local@domain`.
    pub fn address(&self) -> String {
        format!("{}@{}", self.local, self.domain)
    }
}

/// The stored form, as the trigger writes it: `a@b.c` or `Name <a@b.c>`, the name quoted when needed.
impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) if name.chars().any(|c| "()<>[]:;@\\,.\"".contains(c)) => {
                write!(f, "\"{}\" <{}>", name.replace('\\', "\\\\").replace('"', "\\\""), self.address())
            }
            Some(name) => write!(f, "{name} <{}>", self.address()),
            None => f.write_str(&self.address()),
        }
    }
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c)
}

fn dot_atom(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(|part| !part.is_empty() && part.chars().all(is_atext))
}

/// Spaces, controls and invisible formatting characters: never in a domain.
fn forbidden_in_domain(c: char) -> bool {
    c.is_whitespace()
        || matches!(c as u32, 0x01..=0x1f | 0x7f..=0xa0 | 0xad | 0x1680 | 0x180e | 0x2000..=0x200f | 0x2028..=0x202f
            | 0x205f..=0x206f | 0x3000 | 0xfeff | 0xfff0..=0xffff)
}

fn ascii_domain(d: &str) -> bool {
    let labels: Vec<&str> = d.split('.').collect();
    labels.len() >= 2
        && d.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// The bare address of `addr` (`local@domain`, no display name), normalised; `None` if invalid.
fn addr_spec(addr: &str) -> Option<(String, String)> {
    let (local, domain) = addr.rsplit_once('@')?;
    let mut local = local.to_ascii_lowercase();
    // a quoted dot-atom is the dot-atom; lettre cannot carry other quoted local parts
    if local.len() >= 2 && local.starts_with('"') && local.ends_with('"') {
        local = local[1..local.len() - 1].to_owned();
    }
    if local.len() > 64 || !dot_atom(&local) || local.contains("-.") || local.contains(".-") {
        return None;
    }
    let domain = if domain.is_ascii() {
        domain.to_ascii_lowercase()
    } else {
        if domain.chars().any(forbidden_in_domain) {
            return None;
        }
        idna::domain_to_ascii(domain).ok()?
    };
    if !ascii_domain(&domain) || local.len() + 1 + domain.len() > 254 {
        return None;
    }
    Some((local, domain))
}

/// `raw` with each folded line break (CR LF or LF, then spaces or tabs) made one space.
fn unfold(raw: &str) -> String {
    let chars: Vec<char> = raw.chars().collect();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < chars.len() {
        let lf = if chars[i] == '\r' && chars.get(i + 1) == Some(&'\n') { i + 1 } else { i };
        if chars[lf] == '\n' && matches!(chars.get(lf + 1), Some(' ' | '\t')) {
            let mut j = lf + 1;
            while matches!(chars.get(j), Some(' ' | '\t')) {
                j += 1;
            }
            out.push(' ');
            i = j;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// A display name as written before `<`: unquoted, trimmed; `Some("")` when empty, `None` when
/// it cannot be written in a header.
fn display_name(raw: &str) -> Option<String> {
    let unfolded = unfold(raw).replace('\t', " ");
    let mut name = unfolded.trim_matches(' ').to_owned();
    if name.len() >= 2 && name.starts_with('"') && name.ends_with('"') {
        let inner = &name[1..name.len() - 1];
        let mut out = String::new();
        let mut chars = inner.chars();
        let mut quoted = true;
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(n) => out.push(n),
                    None => {
                        quoted = false;
                        break;
                    }
                },
                '"' => {
                    quoted = false;
                    break;
                }
                c => out.push(c),
            }
        }
        if quoted {
            name = out.trim_matches(' ').to_owned();
        }
    }
    if name.chars().any(|c| matches!(c as u32, 0x01..=0x1f | 0x7f)) || name.chars().count() > 255 {
        return None;
    }
    Some(name)
}

/// Parse `a@b.c` or `Name <a@b.c>` with the insert trigger's rules; `None` when it refuses it.
pub fn parse_email(value: &str) -> Option<Email> {
    if value.contains('\0') {
        return None;
    }
    let v = value.trim_matches(' ');
    if let Some(rest) = v.strip_suffix('>') {
        // the address is what follows the last '<'; what precedes it is the display name
        let open = rest.rfind('<')?;
        let inner = &rest[open + 1..];
        if inner.contains('>') {
            return None;
        }
        let (local, domain) = addr_spec(inner.trim_matches(' '))?;
        let name = display_name(&rest[..open])?;
        let name = if name.is_empty() { None } else { Some(name) };
        return Some(Email { name, local, domain });
    }
    let (local, domain) = addr_spec(v)?;
    Some(Email { name: None, local, domain })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(v: &str) -> Option<String> {
        parse_email(v).map(|e| e.to_string())
    }

    #[test]
    fn names_with_specials_are_stored_quoted() {
        assert_eq!(stored("Doe, John <John@Example.com>").as_deref(), Some("\"Doe, John\" <john@example.com>"));
        assert_eq!(stored("\"Doe, John\" <john@example.com>").as_deref(), Some("\"Doe, John\" <john@example.com>"));
        assert_eq!(stored("Ann \"Boss\" Lee <a@b.co>").as_deref(), Some("\"Ann \\\"Boss\\\" Lee\" <a@b.co>"));
        assert_eq!(stored("Ann <a@b.co>").as_deref(), Some("Ann <a@b.co>"));
        assert_eq!(stored("<a@b.co>").as_deref(), Some("a@b.co"));
        assert_eq!(stored("Ann\r\nBcc: x <a@b.co>"), None);
        assert_eq!(stored("Ann\r\n\tLee <a@b.co>").as_deref(), Some("Ann Lee <a@b.co>"));
    }

    #[test]
    fn international_domains_become_ascii_and_quoted_dot_atoms_lose_their_quotes() {
        assert_eq!(stored("ann@Bücher.de").as_deref(), Some("ann@xn--bcher-kva.de"));
        assert_eq!(stored("\"John.Doe\"@example.com").as_deref(), Some("john.doe@example.com"));
        assert_eq!(stored("\"John Doe\"@example.com"), None);
        assert_eq!(stored("jörg@example.com"), None);
        assert_eq!(stored("x@localhost"), None);
        assert_eq!(stored(&format!("x@{}.com", "a".repeat(64))), None);
    }
}
