"""Issue 10, item 10 (and item 1's "a sparse 256 MiB file is uploaded"): an attempt stores at most
RUNNER_MAX_ARTIFACT_FILES files and RUNNER_MAX_ARTIFACT_BYTES bytes, each file at most what its
upload grant allows; the most useful files are kept, and what was left out is said in the result.

Real parts: the real runner (``supercheck-runner``, as the pod runs it), the real k6, real files
(a real sparse file), a real S3 server (moto) and a grant minted as the operator mints it. The
attacker's files are written into the runner's out directory by the site the script calls, on
the script's request: k6 cannot write files itself, and the runner's handling of whatever lands
in out/ is what is under test (a Playwright script that reaches ``fs`` writes the same files).
"""

from __future__ import annotations

import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from supercheck_contract import ExitCode, RunnerResult
from tests.runner.conftest import grant_minter, read_json, run_runner, s3, s3_endpoint  # noqa: F401 - fixtures

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

MiB = 1024 * 1024

SCRIPT = """
import http from 'k6/http';

export const options = { vus: 1, iterations: 1 };

export default function () {
  http.get(__ENV.PLANT_URL);
}
"""


class Planter:
    """An HTTP server that writes files into the out directory of the runner under ``root``:
    ``/plant?sparse=<MiB>`` one sparse file of that length, ``&small=<n>`` n small files."""

    def __init__(self, root: Path):
        self.root = root
        planter = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                query = parse_qs(urlsplit(self.path).query)
                planter.plant(int(query.get("sparse", ["0"])[0]), int(query.get("small", ["0"])[0]),
                              int(query.get("dense", ["0"])[0]))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/plant"

    def plant(self, sparse_mib: int, small: int, dense_mib: int) -> None:
        (out,) = self.root.glob("work-*/out")  # the one runner of the test
        loot = out / "loot"
        loot.mkdir(exist_ok=True)
        if sparse_mib:
            with open(loot / "huge.bin", "wb") as f:
                f.truncate(sparse_mib * MiB)  # a hole: no block written, st_size 256 MiB
        for i in range(small):
            (loot / f"note-{i:03d}.txt").write_text(f"note {i}\n")
        if dense_mib:
            (loot / "dense.bin").write_bytes(os.urandom(dense_mib * MiB))

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def stored(client, run) -> tuple[RunnerResult, set[str]]:
    result = RunnerResult.model_validate(read_json(client, run.config.bucket, f"{run.config.prefix}/result.json"))
    listed = client.list_objects_v2(Bucket=run.config.bucket, Prefix=run.config.prefix + "/")
    return result, {o["Key"][len(run.config.prefix) + 1:] for o in listed.get("Contents", [])}


def test_a_sparse_256_mib_file_is_not_uploaded(run_runner, s3, s3_endpoint, tmp_path):  # noqa: F811
    with Planter(tmp_path) as planter:
        run = run_runner("k6", SCRIPT, env={"PLANT_URL": planter.url + "?sparse=256"},
                         grant=grant_minter(s3_endpoint))  # the operator's defaults
    (huge,) = tmp_path.glob("work-*/out/loot/huge.bin")
    assert huge.stat().st_size == 256 * MiB and huge.stat().st_blocks * 512 < MiB  # really sparse
    assert run.exit_code == ExitCode.PASSED, run.output
    result, keys = stored(s3, run)
    assert "loot/huge.bin" not in keys
    assert result.notUploaded == ["loot/huge.bin"]
    assert {"console.log", "k6-summary.json", "result.json"} <= keys
    assert "1 of" in result.message and "artifacts left out, 256.0 MiB" in result.message
    assert "each at most 100 MiB" in result.message and "loot/huge.bin" in result.message
    assert run.result is not None and "loot/huge.bin" in run.result.message  # the termination message too
    assert sum(f.bytes for f in result.uploaded) < MiB


def test_the_file_cap_keeps_the_reports_and_logs_and_lists_the_rest(run_runner, s3, s3_endpoint,  # noqa: F811
                                                                    tmp_path):
    with Planter(tmp_path) as planter:
        run = run_runner("k6", SCRIPT, env={"PLANT_URL": planter.url + "?small=40"},
                         grant=grant_minter(s3_endpoint), maxArtifactFiles=4)
    assert run.exit_code == ExitCode.PASSED, run.output
    result, keys = stored(s3, run)
    assert len(keys) == 5  # four files and result.json, which is always written
    assert {"console.log", "k6-summary.json", "result.json"} <= keys  # the most useful first
    kept_notes = {k for k in keys if k.startswith("loot/")}
    assert len(kept_notes) <= 2
    assert sorted(result.notUploaded) == sorted({f"loot/note-{i:03d}.txt" for i in range(40)} - kept_notes)
    assert "at most 4 files" in result.message


def test_the_byte_cap_leaves_out_a_large_file_and_keeps_the_small_useful_ones(run_runner, s3,  # noqa: F811
                                                                               s3_endpoint, tmp_path):  # noqa: F811
    with Planter(tmp_path) as planter:
        run = run_runner("k6", SCRIPT, env={"PLANT_URL": planter.url + "?dense=3&small=2"},
                         grant=grant_minter(s3_endpoint), maxArtifactBytes=2 * MiB)
    assert run.exit_code == ExitCode.PASSED, run.output
    result, keys = stored(s3, run)
    assert "loot/dense.bin" not in keys and "loot/dense.bin" in result.notUploaded
    assert {"console.log", "k6-summary.json", "loot/note-000.txt", "loot/note-001.txt"} <= keys
    assert sum(f.bytes for f in result.uploaded) <= 2 * MiB
    assert "2 MiB per run" in result.message
