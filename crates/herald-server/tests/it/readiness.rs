
#[tokio::test]
async fn readyz_follows_the_nats_bus_going_away_and_coming_back() {
    let Ok(nats) = std::env::var("HERALD_TEST_NATS_URL") else {
        eprintln!("SKIPPED readyz_follows_the_nats_bus_going_away_and_coming_back: HERALD_TEST_NATS_URL is not set");
        return;
    };
    let mut proxy = Proxy::start(host_port(&nats)).await;
    let bus = format!("nats://127.0.0.1:{}", proxy.port);
    let app = spawn_app_with(|c| c.bus = bus).await;
    wait_ready(&app, 200, Duration::from_secs(15)).await;

    proxy.cut().await;
    wait_ready(&app, 503, Duration::from_secs(15)).await;
    let body: serde_json::Value = app
        .http
        .get(format!("{}/readyz", app.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["bus"], "disconnected", "{body}");
    assert_eq!(body["store"], "ok", "{body}");
    assert_eq!(status(&app, "/healthz").await, 200, "liveness is not readiness");

    proxy.restore().await;
    wait_ready(&app, 200, Duration::from_secs(20)).await;
    app.stop().await;
}
