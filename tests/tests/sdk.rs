//! The official allscreenshots Rust SDK, unchanged, pointed at a pgshot base URL.

use std::time::{Duration, Instant};

use allscreenshots_sdk::{
    AllscreenshotsClient, BulkDefaults, BulkRequest, BulkUrlOptions, BulkUrlRequest, ImageFormat, JobStatus,
    ScreenshotRequest, ViewportConfig,
};
use pgshot_tests::api_process::{create_key, ApiProcess};
use pgshot_tests::cluster;
use pgshot_tests::site::Site;
use pgshot_tests::worker_process::WorkerProcess;

#[test]
fn the_official_rust_sdk_works_unchanged() {
    let site = Site::start();
    let (_db, db_url) = cluster().fresh_local_db(&[]);
    let key = create_key(&db_url, "sdk");
    let private = [("PGSHOT_ALLOW_PRIVATE_NETWORKS", "true".to_string())];
    let api = ApiProcess::start(&db_url, &private);
    // The blocking Postgres client above cannot run inside a runtime; the SDK needs one.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(sdk_flow(&site, &db_url, &key, &api));
}

async fn sdk_flow(site: &Site, db_url: &str, key: &str, api: &ApiProcess) {
    let private = [("PGSHOT_ALLOW_PRIVATE_NETWORKS", "true".to_string())];
    let client = AllscreenshotsClient::builder().api_key(key).base_url(&api.base).build().unwrap();

    // Cancel before any worker runs, so the job is still queued.
    let doomed = client.screenshot_async(&ScreenshotRequest::simple(site.url("/plain"))).await.unwrap();
    assert_eq!(doomed.status, JobStatus::Queued);
    let cancelled = client.cancel_job(&doomed.id).await.unwrap();
    assert_eq!(cancelled.status, JobStatus::Cancelled);

    let request = ScreenshotRequest::builder()
        .url(site.url("/plain"))
        .viewport(ViewportConfig::new(800, 600))
        .format(ImageFormat::Png)
        .full_page(false)
        .build()
        .unwrap();
    let created = client.screenshot_async(&request).await.unwrap();
    assert!(created.status_url.as_deref().is_some_and(|u| u.ends_with(&created.id)));

    let unfinished = BulkRequest::new(vec![BulkUrlRequest::new(site.url("/slow?ms=20000"))]);
    let bulk_to_cancel = client.create_bulk_job(&unfinished).await.unwrap();
    let bulk = client
        .create_bulk_job(
            &BulkRequest::new(vec![
                BulkUrlRequest::new(site.url("/plain")),
                BulkUrlRequest::with_options(
                    site.url("/box"),
                    BulkUrlOptions { format: Some(ImageFormat::Jpeg), ..Default::default() },
                ),
            ])
            .with_defaults(BulkDefaults { viewport: Some(ViewportConfig::new(640, 480)), ..Default::default() }),
        )
        .await
        .unwrap();
    assert_eq!((bulk.total_jobs, bulk.status.as_str()), (2, "QUEUED"));
    let cancelled_bulk = client.cancel_bulk_job(&bulk_to_cancel.id).await.unwrap();
    assert_eq!(cancelled_bulk.status, "CANCELLED");

    let worker = WorkerProcess::start(db_url, "sdk-worker", &private);
    let deadline = Instant::now() + Duration::from_secs(60);
    let job = loop {
        let job = client.get_job(&created.id).await.unwrap();
        if job.status.is_terminal() {
            break job;
        }
        assert!(Instant::now() < deadline, "{job:?}\n{}", worker.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    let png = client.get_job_result(&created.id).await.unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    let listed = client.list_jobs().await.unwrap();
    assert!(listed.iter().any(|j| j.id == created.id) && listed.iter().any(|j| j.id == doomed.id));

    let finished = loop {
        let status = client.get_bulk_job(&bulk.id).await.unwrap();
        if status.status == "COMPLETED" {
            break status;
        }
        assert!(Instant::now() < deadline, "{status:?}\n{}", worker.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let jobs = finished.jobs.unwrap();
    assert_eq!((finished.completed_jobs, finished.progress, jobs.len()), (2, 100, 2));
    assert_eq!(jobs[1].format.as_deref(), Some("JPEG"));
    assert_eq!(jobs[0].width, Some(640), "defaults apply to every URL");
    let summaries = client.list_bulk_jobs().await.unwrap();
    assert_eq!(summaries.len(), 2);

    // The SDK maps the error body to its error type.
    let missing = client.get_job("nosuchjob0000000").await.unwrap_err();
    assert!(missing.to_string().contains("404") || format!("{missing:?}").contains("NotFound"), "{missing:?}");
}
