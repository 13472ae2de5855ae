// A k6 script for `supercheck run` (k6 is recognised by its import):
//   supercheck run examples/cli/smoke.k6.js --env TARGET_URL=http://127.0.0.1:18090 --wait
import http from 'k6/http';
import { check } from 'k6';

export const options = { vus: 1, iterations: 5, thresholds: { http_req_failed: ['rate<0.01'] } };

export default function () {
  const res = http.get(`${__ENV.TARGET_URL}/api.json`);
  check(res, { 'status is 200': (r) => r.status === 200 });
}
