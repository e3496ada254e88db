//! `GET /`: a small page that shows the top 10 and follows `GET /api/v1/scoreboard/live`
//! through `EventSource` (its script at `GET /scoreboard.js`). Both are compiled into the
//! binary: no build step, no CDN.

use actix_web::HttpResponse;

/// The page.
pub const PAGE: &str = include_str!("page.html");
/// The page's script.
pub const SCRIPT: &str = include_str!("page.js");

/// Nothing from elsewhere, no inline script, never framed.
const POLICY: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; \
    frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Serves the live scoreboard page.
pub async fn index() -> HttpResponse {
    serve("text/html; charset=utf-8", PAGE)
}

/// Serves the page's script.
pub async fn script() -> HttpResponse {
    serve("text/javascript; charset=utf-8", SCRIPT)
}

fn serve(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("content-security-policy", POLICY))
        .insert_header(("x-content-type-options", "nosniff"))
        .body(body)
}
