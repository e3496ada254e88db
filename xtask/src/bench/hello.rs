//! The baseline: the smallest actix-web server, answering `GET /` with a fixed body.

use actix_web::{App, HttpResponse, HttpServer, web};

/// Serves hello-world on 127.0.0.1:`port` until killed.
pub fn serve(port: u16, workers: usize) -> Result<(), String> {
    actix_web::rt::System::new()
        .block_on(async move {
            HttpServer::new(|| {
                App::new().route(
                    "/",
                    web::get().to(|| async { HttpResponse::Ok().body("hello") }),
                )
            })
            .workers(workers)
            .bind(("127.0.0.1", port))?
            .run()
            .await
        })
        .map_err(|e| format!("hello-world server failed: {e}"))
}
