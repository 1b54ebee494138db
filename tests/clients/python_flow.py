"""The whole pgshot flow through the Python client that openapi-python-client generates from
openapi/openapi.json (tests/tests/generated_clients.rs generates it and runs this with it on the
path). Every call goes through the generated functions and models; an assertion names what broke.

Environment: PGSHOT_BASE (the API), PGSHOT_KEY (an API key), PGSHOT_SITE (the test site).
"""

import json
import os
import time

from pgshot_client import AuthenticatedClient
from pgshot_client.api.bulk import cancel_bulk_job, create_bulk_job, get_bulk_job, list_bulk_jobs
from pgshot_client.api.jobs import cancel_job, get_job, get_job_output, get_job_result, list_jobs
from pgshot_client.api.screenshots import create_async_job
from pgshot_client.models import (
    AsyncJobCreated,
    BulkItem,
    BulkJob,
    BulkRequest,
    ErrorBody,
    ErrorCode,
    Format,
    Job,
    JobStatus,
    OutputSpec,
    OutputType,
    ScreenshotOptions,
    ScreenshotRequest,
    Viewport,
)
from pgshot_client.types import File

BASE = os.environ["PGSHOT_BASE"]
SITE = os.environ["PGSHOT_SITE"]
client = AuthenticatedClient(base_url=BASE, token=os.environ["PGSHOT_KEY"], raise_on_unexpected_status=True)


def wait_finished(job_id: str) -> Job:
    deadline = time.time() + 60
    while True:
        job = get_job.sync(job_id, client=client)
        assert isinstance(job, Job), job
        if job.status in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED):
            return job
        assert time.time() < deadline, f"job {job_id} still {job.status}"
        time.sleep(0.2)


# Create a job with one output of every kind, poll it, download each.
outputs = [
    OutputSpec(type_=OutputType.SCREENSHOT, id="shot", format_="png"),
    OutputSpec(type_=OutputType.PDF, id="print", format_="Letter"),
    OutputSpec(type_=OutputType.HTML, id="page", clean=True),
    OutputSpec(type_=OutputType.MARKDOWN, id="md"),
    OutputSpec(type_=OutputType.TEXT, id="text"),
    OutputSpec(type_=OutputType.JSON, id="data"),
]
request = ScreenshotRequest(url=f"{SITE}/plain", viewport=Viewport(width=640, height=480), outputs=outputs)
created = create_async_job.sync(client=client, body=request)
assert isinstance(created, AsyncJobCreated), created
assert created.status == JobStatus.QUEUED and created.status_url.endswith(created.id)
job = wait_finished(created.id)
assert job.status == JobStatus.COMPLETED, (job.error_code, job.error_message)
assert job.metadata.format_ == "MULTI" and job.created_at.year >= 2026, job.metadata
assert sorted(job.outputs.additional_properties) == ["data", "md", "page", "print", "shot", "text"]

def download(output_id: str) -> bytes:
    got = get_job_output.sync(created.id, output_id, client=client)
    assert isinstance(got, File), got
    return got.payload.read()

assert download("shot")[:8] == b"\x89PNG\r\n\x1a\n"
assert download("print")[:5] == b"%PDF-"
page = download("page").decode()
assert "Hello pgshot" in page and "<script" not in page, page[:200]
assert download("md").decode().lstrip().startswith("# Hello pgshot")
assert "Hello pgshot" in download("text").decode()
assert json.loads(download("data"))["title"] == "Plain page"
first = get_job_result.sync(created.id, client=client)
assert isinstance(first, File) and first.payload.read()[:8] == b"\x89PNG\r\n\x1a\n"

# Cancel a job that is not due yet; cancelling it again is refused with its code.
later = create_async_job.sync(client=client, body=ScreenshotRequest(url=f"{SITE}/plain", run_at="2099-01-01T00:00:00Z"))
cancelled = cancel_job.sync(later.id, client=client)
assert isinstance(cancelled, Job) and cancelled.status == JobStatus.CANCELLED, cancelled

# List with paging: X-Next-Cursor from one page is the next call's cursor.
seen, cursor = [], None
while True:
    kwargs = {"limit": 1} if cursor is None else {"limit": 1, "cursor": cursor}
    page_response = list_jobs.sync_detailed(client=client, **kwargs)
    assert page_response.status_code == 200, page_response.content
    seen += [j.id for j in page_response.parsed]
    cursor = page_response.headers.get("x-next-cursor")
    if cursor is None:
        break
assert seen == [later.id, created.id], seen

# Bulk: create with defaults, follow, list, cancel.
bulk_request = BulkRequest(
    urls=[BulkItem(url=f"{SITE}/plain"), BulkItem(url=f"{SITE}/box", options=ScreenshotOptions(format_=Format.JPEG))],
    defaults=ScreenshotOptions(viewport=Viewport(width=320, height=240)),
)
bulk = create_bulk_job.sync(client=client, body=bulk_request)
assert isinstance(bulk, BulkJob) and bulk.total_jobs == 2, bulk
deadline = time.time() + 60
while True:
    bulk = get_bulk_job.sync(bulk.id, client=client)
    if bulk.status == JobStatus.COMPLETED:
        break
    assert time.time() < deadline, bulk
    time.sleep(0.2)
assert [j.format_ for j in bulk.jobs] == ["PNG", "JPEG"] and bulk.jobs[0].width == 320, bulk.jobs
doomed = create_bulk_job.sync(
    client=client, body=BulkRequest(urls=[BulkItem(url=f"{SITE}/plain", options=ScreenshotOptions(run_at="2099-01-01T00:00:00Z"))])
)
assert cancel_bulk_job.sync(doomed.id, client=client).status == JobStatus.CANCELLED
listed = list_bulk_jobs.sync_detailed(client=client, limit=1)
assert [b.id for b in listed.parsed] == [doomed.id] and listed.headers.get("x-next-cursor"), listed.content
rest = list_bulk_jobs.sync(client=client, cursor=listed.headers["x-next-cursor"])
assert [b.id for b in rest] == [bulk.id], rest

# Errors: typed, with their codes; a refused option names its field.
missing = get_job.sync_detailed("nosuchjob0000000", client=client)
assert missing.status_code == 404 and isinstance(missing.parsed, ErrorBody), missing.content
assert missing.parsed.error_code == "NOT_FOUND" and missing.parsed.error.code == "NOT_FOUND"
refused = create_async_job.sync_detailed(client=client, body=ScreenshotRequest(url=f"{SITE}/plain", quality=0))
assert refused.status_code == 400 and refused.parsed.error_code == "INVALID_OPTION", refused.content
assert refused.parsed.validation_errors.additional_properties == {"quality": "quality must be between 1 and 100"}
failed = create_async_job.sync(client=client, body=ScreenshotRequest(url=f"{SITE}/plain", wait_for="#never", timeout=1000, max_attempts=1))
failed_job = wait_finished(failed.id)
assert failed_job.status == JobStatus.FAILED and failed_job.error_code == ErrorCode.SELECTOR_NOT_FOUND, failed_job
print("python client flow: ok")
