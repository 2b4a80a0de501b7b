//! The console's static files, embedded in the binary and served under names that carry a hash
//! of their content, so that a browser may keep them for a year: a new build with changed files
//! links new names. htmx and its SSE extension are vendored as released (licences beside them);
//! `console.js`, the console's own, closes a page's live stream when the page is left.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// (name pages link by, content type, content).
const FILES: [(&str, &str, &[u8]); 4] = [
    ("htmx.js", "text/javascript; charset=utf-8", include_bytes!("assets/htmx-2.0.11.min.js")),
    ("htmx-sse.js", "text/javascript; charset=utf-8", include_bytes!("assets/htmx-ext-sse-2.2.4.min.js")),
    ("console.css", "text/css; charset=utf-8", include_bytes!("assets/console.css")),
    ("console.js", "text/javascript; charset=utf-8", include_bytes!("assets/console.js")),
];

/// `htmx.js` → `htmx.3f2a9c1d.js`, computed once.
fn hashed() -> &'static [String] {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        FILES
            .iter()
            .map(|(name, _, body)| {
                let hash = hex::encode(&Sha256::digest(body)[..4]);
                let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
                format!("{stem}.{hash}.{ext}")
            })
            .collect()
    })
}

/// The URL of the file pages call `name`.
pub fn href(name: &str) -> String {
    let i = FILES.iter().position(|(n, _, _)| *n == name).expect("a known console asset");
    format!("/console/assets/{}", hashed()[i])
}

/// `GET /console/assets/{file}`: the file, cacheable for a year; 404 for any other name
/// (an old hash included).
pub async fn serve(Path(file): Path<String>) -> Response {
    match hashed().iter().position(|n| *n == file) {
        Some(i) => ([(header::CONTENT_TYPE, FILES[i].1), (header::CACHE_CONTROL, "public, max-age=31536000, immutable")], FILES[i].2)
            .into_response(),
        None => (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "no such file").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_content_hash() {
        let css = href("console.css");
        assert!(css.starts_with("/console/assets/console.") && css.ends_with(".css"), "{css}");
        assert_eq!(css.len(), "/console/assets/console..css".len() + 8);
    }
}
