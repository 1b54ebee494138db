//! The Rust client generated from the committed spec (openapi/client) drives the whole flow.

use std::time::{Duration, Instant};

use futures::TryStreamExt;
use pgshot_client::{types, ClientJobsExt, ClientScreenshotsExt};
use pgshot_tests::api_process::{create_key, ApiProcess};
use pgshot_tests::cluster;
use pgshot_tests::site::Site;
use pgshot_tests::worker_process::WorkerProcess;

#[test]
fn the_generated_client_creates_polls_downloads_and_reads_errors() {
    let site = Site::start();
    let (_db, db_url) = cluster().fresh_local_db(&[]);
    let key = create_key(&db_url, "generated");
    let private = [("PGSHOT_ALLOW_PRIVATE_NETWORKS", "true".to_string())];
    let api = ApiProcess::start(&db_url, &private);
    let worker = WorkerProcess::start(&db_url, "client-worker", &private);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = pgshot_client::with_api_key(&api.base, &key).unwrap();
        let request = types::ScreenshotRequest::builder()
            .url(site.url("/plain"))
            .viewport(Some(types::Viewport::builder().width(Some(500)).height(Some(400)).try_into().unwrap()))
            .full_page(Some(false));
        let created = client.create_async_job().body(request).send().await.unwrap().into_inner();
        assert_eq!(created.status, types::JobStatus::Queued);

        let deadline = Instant::now() + Duration::from_secs(60);
        let job = loop {
            let job = client.get_job().job_id(&created.id).send().await.unwrap().into_inner();
            if job.status == types::JobStatus::Completed {
                break job;
            }
            assert!(Instant::now() < deadline, "{job:?}\n{}", worker.log());
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(job.metadata.as_ref().unwrap().width, Some(500));

        let bytes: Vec<u8> = client
            .get_job_result()
            .job_id(&created.id)
            .send()
            .await
            .unwrap()
            .into_inner_stream()
            .map_ok(|chunk| chunk.to_vec())
            .try_concat()
            .await
            .unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");

        let jobs = client.list_jobs().send().await.unwrap().into_inner();
        assert_eq!(jobs.len(), 1);

        match client.get_job().job_id("nosuchjob0000000").send().await {
            Err(pgshot_client::Error::ErrorResponse(resp)) => {
                assert_eq!(resp.status().as_u16(), 404);
                assert_eq!((resp.error.code.as_str(), resp.error_code.as_str()), ("NOT_FOUND", "NOT_FOUND"));
            }
            other => panic!("expected a typed 404, got {other:?}"),
        }
    });
}
