// k6 load on a Tranzcast edge: hot blobs with the certificate header, random
// ranges of them, and a playback URL with ranges, over HTTP/2 (TLS).
//
// k6 is not in Debian; users who have it run, against `tranzcast demo --serve`:
//   C=$DATA/cluster.json
//   k6 run -e EDGE=$(jq -r '.edges[0].https' $C) -e BLOB=$(jq -r .blob $C) \
//          -e CERT="$(jq -r .certificate $C)" -e PLAY=$(jq -r .playback_url $C) \
//          -e DURATION=30s -e VUS=32 --insecure-skip-tls-verify loadtest/k6/edge.js
// (or give k6 the cluster's CA: SSL_CERT_FILE=$(jq -r .ca $C)). Bounded: it
// stops after DURATION. See docs/loadtest.md for the figures and oha lines.
import http from 'k6/http';
import { check } from 'k6';

const EDGE = __ENV.EDGE;
const BLOB = __ENV.BLOB;
const CERT = __ENV.CERT;
const PLAY = __ENV.PLAY;
const DURATION = __ENV.DURATION || '30s';
const VUS = parseInt(__ENV.VUS || '32', 10);

export const options = {
  scenarios: {
    hot_blob: { executor: 'constant-vus', vus: VUS, duration: DURATION, exec: 'hotBlob' },
    blob_ranges: { executor: 'constant-vus', vus: VUS, duration: DURATION, exec: 'blobRange' },
    playback_ranges: { executor: 'constant-vus', vus: VUS, duration: DURATION, exec: 'playbackRange' },
  },
  thresholds: {
    checks: ['rate>0.999'],
    'http_req_duration{scenario:hot_blob}': ['p(99)<500'],
    'http_req_duration{scenario:blob_ranges}': ['p(99)<100'],
  },
};

const auth = { headers: { Authorization: `Tranzcast ${CERT}` } };

export function hotBlob() {
  const r = http.get(`${EDGE}/v1/blobs/${BLOB}`, auth);
  check(r, { 'blob 200': (x) => x.status === 200, 'immutable': (x) => (x.headers['Cache-Control'] || '').includes('immutable') });
}

export function blobRange() {
  const start = Math.floor(Math.random() * 200000);
  const r = http.get(`${EDGE}/v1/blobs/${BLOB}`, { headers: { ...auth.headers, Range: `bytes=${start}-${start + 4095}` } });
  check(r, { 'range 206': (x) => x.status === 206, '4 KiB': (x) => x.body.length === 4096 });
}

export function playbackRange() {
  const start = Math.floor(Math.random() * 1000000);
  const r = http.get(PLAY, { headers: { Range: `bytes=${start}-${start + 65535}` } });
  check(r, { 'play 206': (x) => x.status === 206 });
}
