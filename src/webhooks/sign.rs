//! Standard Webhooks signing (symmetric, `v1`): the secret is `whsec_` + base64 of random bytes;
//! the signature is `v1,` + base64(HMAC-SHA256(decoded secret, "{webhook-id}.{webhook-timestamp}.{body}")),
//! sent in `webhook-signature` next to `webhook-id` and `webhook-timestamp` (unix seconds).
//! See <https://www.standardwebhooks.com/> (spec/standard-webhooks.md, "Signature scheme").
//! During a secret's rollover window ([`signatures`]) the header carries one signature per
//! secret, space-separated: a receiver accepts the event when any of them verifies.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix of a symmetric Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// A fresh endpoint secret: 32 random bytes (the spec asks for 24 to 64), `whsec_<base64>`.
pub fn new_secret() -> String {
    format!("{SECRET_PREFIX}{}", STANDARD.encode(rand::random::<[u8; 32]>()))
}

/// The secret is not `whsec_<base64>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the endpoint secret is not whsec_ followed by base64")]
pub struct BadSecret;

/// The key bytes of a `whsec_` secret.
pub fn secret_key(secret: &str) -> Result<Vec<u8>, BadSecret> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).ok_or(BadSecret)?;
    STANDARD.decode(encoded).map_err(|_| BadSecret).and_then(|k| if k.is_empty() { Err(BadSecret) } else { Ok(k) })
}

/// The `webhook-signature` header value for one attempt.
pub fn signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, BadSecret> {
    let key = secret_key(secret)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| BadSecret)?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())))
}

/// The `webhook-signature` value for several secrets (the current one first, then the one a
/// rotation replaced): `v1,<sig> v1,<sig>`.
pub fn signatures<'a>(secrets: impl IntoIterator<Item = &'a str>, id: &str, timestamp: i64, body: &[u8]) -> Result<String, BadSecret> {
    let all = secrets.into_iter().map(|s| signature(s, id, timestamp, body)).collect::<Result<Vec<_>, _>>()?;
    Ok(all.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference vector of the Standard Webhooks test suites.
    #[test]
    fn reference_vector() {
        let sig =
            signature("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
        assert_eq!(sig.unwrap(), "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn one_signature_per_secret() {
        let (a, b) = ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", new_secret());
        let both = signatures([a, b.as_str()], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#).unwrap();
        let (first, second) = both.split_once(' ').unwrap();
        assert_eq!(first, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert_eq!(second, signature(&b, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#).unwrap());
        assert_eq!(signatures([a, "whsec_!!"], "x", 1, b"").unwrap_err(), BadSecret);
    }

    #[test]
    fn secrets() {
        let s = new_secret();
        assert!(s.starts_with("whsec_"));
        assert_eq!(secret_key(&s).unwrap().len(), 32);
        assert_ne!(s, new_secret());
        assert_eq!(secret_key("whsec_!!"), Err(BadSecret));
        assert_eq!(secret_key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), Err(BadSecret));
    }
}
