//! The OpenAPI document as a test table: every operation with its method, path template, query
//! parameters and JSON body fields, so table tests cover a route the day it is documented.

use reqwest::Method;
use serde_json::Value;

use crate::support::TestApp;

/// One documented operation.
#[derive(Debug, Clone)]
pub struct Operation {
    pub method: Method,
    /// The path template, e.g. `/api/v1/events/{id}`.
    pub path: String,
    /// Parameters sent in the query string (every non-header parameter not in the template).
    pub query: Vec<String>,
    /// Top-level properties of the JSON request body; `None` when it takes no body.
    pub body_fields: Option<Vec<String>>,
}

impl Operation {
    /// Whether the path has `{parameters}`.
    pub fn has_path_params(&self) -> bool {
        self.path.contains('{')
    }

    /// The path with every `{parameter}` replaced by `value`, percent-encoded.
    pub fn path_with(&self, value: &str) -> String {
        let mut out = String::new();
        let mut rest = self.path.as_str();
        while let Some(open) = rest.find('{') {
            let close = rest[open..].find('}').unwrap() + open;
            out.push_str(&rest[..open]);
            out.push_str(&percent_encode(value));
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        out
    }

    /// The path with every `{parameter}` replaced by a fresh UUID (parses, names nothing).
    pub fn concrete(&self) -> String {
        self.path_with(&uuid::Uuid::now_v7().to_string())
    }

    /// A request for this operation to `path` (query included) as `token`, with an
    /// `Idempotency-Key`, so a creating route gets as far as reading its input.
    pub fn request(&self, app: &TestApp, path: &str, token: &str) -> reqwest::RequestBuilder {
        keyed_request(app, self.method.clone(), path, token)
    }

    /// Sends [`Operation::request`] with a JSON `body`.
    pub async fn send_json(
        &self,
        app: &TestApp,
        path: &str,
        token: &str,
        body: &Value,
    ) -> reqwest::Response {
        let request = self.request(app, path, token).json(body);
        request.send().await.unwrap()
    }
}

/// A `method` request to `path` as `token` with a fresh `Idempotency-Key`.
pub fn keyed_request(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
) -> reqwest::RequestBuilder {
    app.client
        .request(method, app.url(path))
        .bearer_auth(token)
        .header("idempotency-key", uuid::Uuid::now_v7().to_string())
}

/// Every operation of the server's `/openapi.json`.
pub async fn operations(app: &TestApp) -> Vec<Operation> {
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let mut all = Vec::new();
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let query = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] != "header")
                .filter_map(|p| p["name"].as_str())
                .filter(|name| !path.contains(&format!("{{{name}}}")))
                .map(str::to_owned)
                .collect();
            let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
            let body_fields = (!schema.is_null()).then(|| body_fields(&doc, schema));
            all.push(Operation {
                method: Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                path: path.clone(),
                query,
                body_fields,
            });
        }
    }
    all
}

/// The top-level property names of a (possibly `$ref`) body schema.
fn body_fields(doc: &Value, schema: &Value) -> Vec<String> {
    let resolved = match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.rsplit('/').next().unwrap();
            &doc["components"]["schemas"][name]
        }
        None => schema,
    };
    resolved["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// `value` with every byte outside RFC 3986's unreserved set percent-encoded.
pub fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
