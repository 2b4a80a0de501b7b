//! Unknown paths and wrong methods answer with the JSON error body too (404, 405 with Allow).

use super::Api;
use reqwest::Method;

#[tokio::test]
async fn unknown_routes_are_json_404_and_wrong_methods_json_405() {
    let api = Api::start().await;
    for path in ["/v1/nope", "/v1/messages/1/explode", "/nope", "/v2/messages", "/v1/messages/1/retry/again"] {
        for key in [Some(api.admin.as_str()), None] {
            let (s, v) = api.call(Method::GET, path, key, None).await;
            assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")), "{path}: {v}");
            assert!(v["error"]["message"].as_str().unwrap().contains(path), "{v}");
        }
    }
    for (method, path) in [
        (Method::DELETE, "/v1/messages"),
        (Method::PUT, "/v1/messages/1"),
        (Method::GET, "/v1/messages/1/retry"),
        (Method::GET, "/v1/messages/1/resend"),
        (Method::GET, "/v1/messages/retry"),
        (Method::POST, "/health"),
    ] {
        let resp = api.app.http.request(method.clone(), api.app.url(path)).header("x-api-key", &api.admin).send().await.unwrap();
        let status = resp.status().as_u16();
        let allow = resp.headers().get("allow").map(|v| v.to_str().unwrap().to_owned());
        let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
        let v: serde_json::Value = resp.json().await.unwrap_or_default();
        assert_eq!((status, v["error"]["code"].as_str()), (405, Some("method_not_allowed")), "{method} {path}: {v}");
        assert_eq!(ct.as_deref(), Some("application/json"), "{method} {path}");
        assert!(allow.is_some_and(|a| !a.is_empty()), "{method} {path}: an Allow header");
    }
    api.stop().await;
}
