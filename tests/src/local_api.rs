//! A local HTTP server standing in for an external AI API in a test (the code under
//! test is the real client).

/// Serves `app` on a free port of 127.0.0.1 in a task; its base URL, `http://…/v1`.
pub async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    format!("http://{addr}/v1")
}
